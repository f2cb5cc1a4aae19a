"""``mobilenet_v2``: transfer learning from ImageNet MobileNetV2 (α=0.35 by default, weights bundled)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visioncascade.errors import ConfigError, ModelError
from visioncascade.models.registry import register_architecture

if TYPE_CHECKING:
    import keras

__all__ = ["BUNDLED_WEIGHTS", "build_mobilenet_v2", "resolve_weights"]

BUNDLED_WEIGHTS = {0.35: "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"}


def resolve_weights(weights: str | None, alpha: float) -> str | None:
    """Turn a ``--weights`` value into what Keras takes: a file path, ``"imagenet"`` or ``None``.

    ``None``/``"bundled"`` is the no-top file shipped in the package (α=0.35 only); ``"none"`` is random
    initialisation; ``"imagenet"`` is Keras's own downloader (needs a connection); anything else is a path.
    """
    if weights is None or weights == "bundled":
        if alpha not in BUNDLED_WEIGHTS:
            raise ModelError(
                f"no bundled ImageNet weights for MobileNetV2 alpha={alpha} (bundled: alpha "
                f"{', '.join(map(str, BUNDLED_WEIGHTS))}); pass --weights PATH to a no-top .h5, "
                "--weights imagenet on a connected machine, or --weights none"
            )
        ref = resources.files("visioncascade.models") / "weights" / BUNDLED_WEIGHTS[alpha]
        return str(ref)
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(
            f"weights file {weights!r} does not exist; pass a Keras no-top .h5 file, 'imagenet', 'bundled' or 'none'"
        )
    return str(path)


def _weights_hint(path: str, alpha: float) -> str:
    """What to do about a weights file that does not fit, from the names Keras gives its files."""
    name = Path(path).name
    v2 = re.fullmatch(
        r"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_(\d+(?:\.\d+)?)_\d+(?:_no_top)?\.h5", name
    )
    if v2 and float(v2.group(1)) != alpha:
        return (
            f"its name says MobileNetV2 alpha={v2.group(1)}: add --alpha {v2.group(1)}, or pass the Keras "
            f"no-top .h5 made for alpha={alpha}"
        )
    if re.fullmatch(r"mobilenet_\d_\d+_\d+_tf(?:_no_top)?\.h5", name):
        return (
            f"its name says MobileNet (v1) weights, not MobileNetV2: pass the Keras no-top .h5 made for "
            f"MobileNetV2 alpha={alpha}"
        )
    return f"pass the Keras no-top .h5 made for MobileNetV2 alpha={alpha}"


def _check_params(params: dict[str, Any]) -> None:
    """What the builder refuses, found without Keras: weights that are not there, a negative ``freeze``,
    and ``freeze`` with random weights (the upper bound of ``freeze`` needs the built base)."""
    resolved = resolve_weights(params["weights"], params["alpha"])
    if params["freeze"] < 0:
        raise ConfigError(
            f"--freeze must be 0 or more (layers of MobileNetV2 to freeze), got {params['freeze']}"
        )
    if params["freeze"] and resolved is None:
        raise ConfigError(
            "--freeze with --weights none would freeze random weights and leave BatchNorm statistics unset; "
            "use pretrained weights or --freeze 0"
        )


@register_architecture(
    "mobilenet_v2",
    defaults={"alpha": 0.35, "weights": "bundled", "freeze": 0, "dropout": 0.2},
    description="Keras MobileNetV2 (ImageNet weights) + global average pool + dense head",
    default_image_size=96,
    min_image_size=32,
    default_learning_rate=1e-4,
    # A quarter of the scratch CNN's 20: an epoch costs 3-4x as much, and the default `compare` must stay
    # within 20 minutes on 2 slow cores. 5 epochs gave most of 20's gain in val log loss, less of its
    # (noisy) test ROC-AUC gain (BENCHMARKS.md, "`compare` within 20 minutes on a slower host").
    default_average_epochs=5,
    check=_check_params,
)
def build_mobilenet_v2(
    input_shape: tuple[int, int, int],
    num_classes: int,
    edges: bool,
    alpha: float,
    weights: str | None,
    freeze: int,
    dropout: float,
) -> keras.Model:
    """Build MobileNetV2 transfer model. Input: raw 0..255 pixels (1 or 3 channels); output: probabilities.

    Grayscale input is repeated to 3 channels. With ``edges``, the Sobel channel is appended and a 1x1
    convolution (initialised to pass RGB through unchanged) maps the 4 channels to the 3 that ImageNet
    weights expect. The first ``freeze`` layers of the MobileNetV2 base are frozen; frozen BatchNorm layers
    run in inference mode with their ImageNet statistics.
    With pretrained weights all BatchNorm layers of the base are frozen in inference mode (ImageNet
    statistics); convolutions after the first ``freeze`` layers fine-tune.
    """
    import keras  # here, not at the top: the registry is read before TensorFlow loads

    from visioncascade.models.layers import SobelEdges, TemperatureSoftmax, _pass_rgb_initializer

    height, width, channels = input_shape
    resolved = resolve_weights(weights, alpha)
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(height, width, 3), alpha=alpha, include_top=False, weights=resolved
        )
    except Exception as exc:  # Keras's downloader raises a bare Exception ("URL fetch failure ...")
        if resolved == "imagenet":
            raise ModelError(
                f"could not get the ImageNet weights for mobilenet_v2 (alpha={alpha}) from Keras's "
                f"downloader: {exc}; this machine may be offline: pass --weights PATH to a local no-top .h5 "
                "(or leave --weights unset for the bundled alpha=0.35 file)"
            ) from exc
        if not isinstance(exc, (ValueError, OSError)):
            raise
        raise ModelError(
            f"weights file {resolved} does not fit mobilenet_v2 (alpha={alpha}): {exc}; "
            f"{_weights_hint(resolved, alpha)}"
        ) from exc
    if not 0 <= freeze <= len(base.layers):
        raise ConfigError(
            f"--freeze must be between 0 and {len(base.layers)} (layers in MobileNetV2), got {freeze}"
        )
    for layer in base.layers[:freeze]:
        layer.trainable = False
    # Every BatchNorm of the base keeps its ImageNet statistics: a non-trainable Keras BatchNorm runs in
    # inference mode. Updating statistics from small batches of unlike data (momentum 0.999) is what makes
    # fine-tuned MobileNets fail on validation data. (Calling base(x, training=False) does not do this in
    # Keras 3: the outer model's training flag overrides it.)
    if resolved is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False

    inputs = keras.Input(shape=input_shape, name="image")
    unit = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_mobilenet_range")(unit)
    if channels == 1:
        x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if edges:
        edge = SobelEdges(append=False, name="sobel_edges")(unit)
        edge = keras.layers.Rescaling(2.0, offset=-1.0, name="edges_to_range")(edge)
        x = keras.layers.Concatenate(name="with_edges")([x, edge])
        x = keras.layers.Conv2D(
            3,
            1,
            use_bias=False,
            kernel_initializer=_pass_rgb_initializer,
            name="edge_adapter",
        )(x)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = TemperatureSoftmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=f"mobilenet_v2_{alpha}")
