"""Shared pieces of the exporters: formats and precisions, artifact hashing, converter-failure messages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import keras

from visioncascade.errors import ExportError

__all__ = [
    "DEFAULT_PRECISION",
    "FORMATS",
    "PRECISIONS",
    "SUPPORTED_PRECISIONS",
    "artifact_bytes",
    "artifact_sha256",
    "check_precision",
    "converter_error",
    "iter_layers",
]

FORMATS = ("coreml", "tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")
#: What each format can do; the ``mlmodel`` (neural network) Core ML format is checked separately.
SUPPORTED_PRECISIONS: dict[str, tuple[str, ...]] = {
    "coreml": ("fp32", "fp16", "int8"),
    "coreml-mlmodel": ("fp32", "fp16"),
    "tflite": ("fp32", "fp16", "int8"),
    "onnx": ("fp32",),
}
DEFAULT_PRECISION = {"coreml": "fp16", "tflite": "fp32", "onnx": "fp32"}

#: Keras layer classes the exporters are tested on (both registry architectures, with/without edges).
TESTED_LAYERS = frozenset(
    {
        "InputLayer",
        "Rescaling",
        "SobelEdges",
        "Conv2D",
        "DepthwiseConv2D",
        "BatchNormalization",
        "ReLU",
        "MaxPooling2D",
        "GlobalAveragePooling2D",
        "Dropout",
        "Dense",
        "TemperatureSoftmax",
        "Concatenate",
        "ZeroPadding2D",
        "Add",
        "Functional",
    }
)


def check_precision(fmt: str, precision: str) -> None:
    """Raise :class:`ExportError` unless format ``fmt`` can be exported at ``precision``."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    allowed = SUPPORTED_PRECISIONS[fmt]
    if precision not in allowed:
        hint = {
            "onnx": "ONNX artifacts are fp32 (use tflite or coreml for fp16/int8)",
            "coreml-mlmodel": "the neural-network .mlmodel format is exported at fp32 or fp16; "
            "use --coreml-format mlprogram for int8 weight compression",
        }.get(fmt, "")
        raise ExportError(
            f"format {fmt} cannot be exported at precision {precision}; it supports "
            f"{', '.join(allowed)}" + (f" — {hint}" if hint else "")
        )


def iter_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of ``model``, descending into nested models (e.g. the MobileNetV2 base)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)


def converter_error(fmt: str, model: keras.Model, exc: BaseException) -> ExportError:
    """An :class:`ExportError` for a failed conversion that names the layer(s) responsible where it can.

    A layer is named when its name appears in the converter's message (converters report the failing
    TensorFlow op, whose name carries the Keras layer's name); layers of classes the exporters are not
    tested on are listed as suspects otherwise.
    """
    text = str(exc)
    lowered = text.lower()
    layers = list(iter_layers(model))
    named = [layer for layer in layers if layer.name.lower() in lowered and len(layer.name) > 2]
    named = [layer for layer in named if not any(o is not layer and layer.name in o.name for o in named)]
    untested = [layer for layer in layers if type(layer).__name__ not in TESTED_LAYERS]
    culprits = named or untested
    first_line = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    if culprits:
        who = ", ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in culprits[:5])
        return ExportError(
            f"{fmt} conversion failed at layer {who}: the converter cannot handle it ({first_line[:400]}); "
            "rewrite the layer with standard ops (convolution, elementwise maths, softmax) or drop it"
        )
    return ExportError(f"{fmt} conversion failed: {first_line[:400]}")


def artifact_bytes(path: Path) -> int:
    """Size of an artifact file, or the total size of an artifact folder (``.mlpackage``)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def artifact_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's sorted relative paths and file contents."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
