"""Custom Keras layers that are part of every saved and exported model.

Both are plain tensor maths (convolution, square root, division, softmax) so that the ONNX, TFLite and
Core ML converters handle them without custom ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

__all__ = ["SobelEdges", "TemperatureSoftmax"]

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
_LUMA = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="visioncascade")
class SobelEdges(keras.layers.Layer):
    """A fixed (non-trainable) Sobel edge-magnitude channel.

    Takes images scaled to 0..1 with 1 or 3 channels; computes luminance, the Sobel gradients in x and y
    (zero padding, ``same`` size) and their magnitude divided by ``4 * sqrt(2)`` so it stays within 0..1.
    With ``append=True`` returns the input with the edge channel appended (C+1 channels); otherwise the
    edge channel alone.
    """

    def __init__(self, append: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.append = bool(append)

    def call(self, inputs):
        channels = inputs.shape[-1]
        if channels == 3:
            gray = ops.sum(
                inputs * ops.convert_to_tensor(np.array(_LUMA), dtype=inputs.dtype), axis=-1, keepdims=True
            )
        elif channels == 1:
            gray = inputs
        else:
            raise ValueError(f"SobelEdges takes 1 or 3 channels, got {channels}")
        kernel = np.stack([_SOBEL_X, _SOBEL_X.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2)
        grads = ops.conv(gray, ops.convert_to_tensor(kernel, dtype=inputs.dtype), strides=1, padding="same")
        magnitude = ops.sqrt(ops.sum(ops.square(grads), axis=-1, keepdims=True) + 1e-6) / (4.0 * np.sqrt(2.0))
        if self.append:
            return ops.concatenate([inputs, magnitude], axis=-1)
        return magnitude

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1 if self.append else 1)

    def get_config(self):
        return {**super().get_config(), "append": self.append}


@keras.saving.register_keras_serializable(package="visioncascade")
class TemperatureSoftmax(keras.layers.Layer):
    """Softmax of ``logits / temperature + offsets``: the calibrated class probabilities.

    ``temperature`` (a scalar) and ``offsets`` (one per class: the prior correction of a class-weighted
    model, see :mod:`visioncascade.train.calibration`) are non-trainable weights set by calibration;
    1 and zeros leave the softmax as it is.
    """

    def __init__(self, temperature: float = 1.0, offsets: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._initial_temperature = float(temperature)
        self._initial_offsets = [float(v) for v in offsets] if offsets else None

    def build(self, input_shape):
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer=keras.initializers.Constant(self._initial_temperature),
            trainable=False,
        )
        classes = int(input_shape[-1])
        initial = self._initial_offsets
        if initial is not None and len(initial) != classes:
            raise ValueError(f"offsets must have one value per class ({classes}), got {len(initial)}")
        self.offsets = self.add_weight(
            name="offsets",
            shape=(classes,),
            initializer=keras.initializers.Constant(np.asarray(initial or [0.0] * classes, np.float32)),
            trainable=False,
        )

    def call(self, logits):
        return ops.softmax(logits / self.temperature + self.offsets, axis=-1)

    def set_temperature(self, value: float) -> None:
        """Set the calibration temperature (must be > 0)."""
        if not value > 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        self.temperature.assign(float(value))
        self._initial_temperature = float(value)

    def set_offsets(self, values: Sequence[float] | np.ndarray) -> None:
        """Set the per-class logit offsets (one finite value per class; zeros for none)."""
        values = np.asarray(values, np.float32).reshape(-1)
        if values.shape != tuple(self.offsets.shape) or not np.all(np.isfinite(values)):
            raise ValueError(f"offsets must be {self.offsets.shape[0]} finite values, got {values.tolist()}")
        self.offsets.assign(values)
        self._initial_offsets = [float(v) for v in values]

    def load_own_variables(self, store):
        # Models saved before the offsets existed hold the temperature alone: offsets stay zero.
        if len(store.keys()) == 1:
            self.temperature.assign(store["0"])
            self._initial_temperature = float(np.asarray(store["0"]))
            return
        super().load_own_variables(store)
        self._initial_temperature = float(np.asarray(self.temperature))
        self._initial_offsets = [float(v) for v in np.asarray(self.offsets)]

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self._initial_temperature,
            "offsets": self._initial_offsets,
        }


# The name is part of every saved mobilenet_v2 model with edges ("visioncascade>_pass_rgb_initializer"):
# keep it. It lives here, with the layers, so that loading a model registers it without the builder.
@keras.saving.register_keras_serializable(package="visioncascade")
def _pass_rgb_initializer(shape, dtype=None):
    """1x1 kernel (1, 1, 4, 3): identity on the RGB channels, zero on the edge channel."""
    kernel = np.zeros(shape, dtype="float32")
    for c in range(min(shape[2], shape[3])):
        kernel[0, 0, c, c] = 1.0
    return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")
