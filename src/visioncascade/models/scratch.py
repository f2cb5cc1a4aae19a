"""``scratch``: a small CNN trained from scratch (grayscale or RGB, well under 100k parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from visioncascade.errors import ConfigError
from visioncascade.models.registry import register_architecture

if TYPE_CHECKING:
    import keras

__all__ = ["build_scratch"]


@register_architecture(
    "scratch",
    defaults={"filters": [16, 32, 64], "dropout": 0.3, "stem_stride": "auto"},
    description="small VGG-style CNN: 2 x (conv3x3-BN-ReLU) per stage, max-pool, global average pool",
    default_image_size=64,
    min_image_size=8,
    default_learning_rate=1e-3,
)
def build_scratch(
    input_shape: tuple[int, int, int],
    num_classes: int,
    edges: bool,
    filters: list[int],
    dropout: float,
    stem_stride: int | str,
) -> keras.Model:
    """Build the scratch CNN. Input: raw 0..255 pixels; output: class probabilities.

    ``stem_stride`` is the stride of the very first convolution: ``"auto"`` uses 2 for inputs of 64 px
    and more (4x less compute at full resolution, where most of it is) and 1 for smaller ones.
    """
    import keras  # here, not at the top: the registry is read before TensorFlow loads

    from visioncascade.models.layers import SobelEdges, TemperatureSoftmax

    if stem_stride == "auto":
        stem_stride = 2 if min(input_shape[:2]) >= 64 else 1
    if stem_stride not in (1, 2):
        raise ConfigError(f"stem_stride must be 1, 2 or 'auto', got {stem_stride!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if edges:
        x = SobelEdges(append=True, name="sobel_edges")(x)
    for stage, width in enumerate(filters):
        for conv in range(2):
            stride = stem_stride if (stage, conv) == (0, 0) else 1
            x = keras.layers.Conv2D(
                width, 3, strides=stride, padding="same", use_bias=False, name=f"s{stage}_conv{conv}"
            )(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"s{stage}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"s{stage}_relu{conv}")(x)
        if stage < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = TemperatureSoftmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="scratch_cnn")
