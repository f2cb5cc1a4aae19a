"""Shared pieces of the exporters: formats and precisions, artifact hashing, converter-failure messages."""

from __future__ import annotations

import hashlib
import re
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


_OP_PATTERNS = (
    r"\btf\.([A-Z][A-Za-z0-9]+)",
    r"TF op '([A-Za-z0-9]+)'",
    r"OpType: ([A-Za-z0-9]+)",
    r"No Op registered for ([A-Za-z0-9]+)",
    r"Custom ops: ([A-Za-z0-9]+)",
)


def _unsupported_ops(text: str) -> list[str]:
    found: list[str] = []
    for pattern in _OP_PATTERNS:
        found += re.findall(pattern, text)
    return list(dict.fromkeys(op for op in found if op not in {"Identity", "NoOp", "Placeholder"}))


def _layers_for_ops(model: keras.Model, op_types: list[str]) -> list[tuple[keras.layers.Layer, str]]:
    """Which layers of ``model`` emit TensorFlow ops of ``op_types`` (found by tracing the model)."""
    import tensorflow as tf

    try:
        signature = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(signature).graph
    except Exception:  # tracing itself fails: no layer can be pinned down this way
        return []
    layers = {layer.name: layer for layer in iter_layers(model)}
    found: list[tuple[keras.layers.Layer, str]] = []
    for op in graph.get_operations():
        if op.type not in op_types:
            continue
        for part in reversed(op.name.split("/")[:-1]):
            name = part if part in layers else re.sub(r"_\d+$", "", part)
            if name in layers:
                if all(layer is not layers[name] for layer, _ in found):
                    found.append((layers[name], op.type))
                break
    return found


def converter_error(fmt: str, model: keras.Model, exc: BaseException) -> ExportError:
    """An :class:`ExportError` for a failed conversion that names the layer responsible and why.

    The converter's message names the TensorFlow op it has no rule for; tracing the model maps that op to
    the Keras layer that emits it. Failing that, layers of classes the exporters are not tested on are
    named as suspects.
    """
    text = str(exc)
    ops = _unsupported_ops(text)
    culprits = _layers_for_ops(model, ops) if ops else []
    summary = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)[:300]
    if culprits:
        who = ", ".join(
            f"{layer.name!r} ({type(layer).__name__}, TensorFlow op {op})" for layer, op in culprits
        )
        return ExportError(
            f"{fmt} conversion failed at layer {who}: the {fmt} converter has no rule for op "
            f"{', '.join(dict.fromkeys(op for _, op in culprits))}; rewrite the layer with standard ops "
            "(convolution, elementwise maths, softmax) or leave it out"
        )
    untested = [layer for layer in iter_layers(model) if type(layer).__name__ not in TESTED_LAYERS]
    if untested:
        who = ", ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in untested[:5])
        return ExportError(
            f"{fmt} conversion failed ({summary}); layers the exporters are not tested on: {who} — "
            "rewrite them with standard ops or leave them out"
        )
    return ExportError(f"{fmt} conversion failed: {summary}")


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
