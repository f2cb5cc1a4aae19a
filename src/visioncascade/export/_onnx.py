"""ONNX export (opset 17, dynamic batch, input ``image``, output ``probabilities``) and an onnxruntime runner.

Conversion uses Keras's own ONNX export (``model.export(format="onnx")``, tf2onnx underneath for the
TensorFlow backend); the graph's input and output are then given stable names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import keras

from visioncascade.errors import ExportError
from visioncascade.export._common import check_precision, converter_error
from visioncascade.spec import ModelSpec

__all__ = ["ONNX_OPSET", "export_onnx"]

ONNX_OPSET = 17


def export_onnx(
    model: keras.Model, path: str | Path, spec: ModelSpec, *, precision: str = "fp32", opset: int = ONNX_OPSET
) -> Path:
    """Convert ``model`` to ONNX at ``path`` with a dynamic batch dimension.

    The input is ``image`` (float32 ``(batch, H, W, C)`` raw 0..255 pixels), the output ``probabilities``
    (float32 ``(batch, K)`` in ``spec.labels`` order).
    """
    import onnx

    check_precision("onnx", precision)
    if opset < 17:
        raise ExportError(f"ONNX export needs opset 17 or later, got {opset}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"an ONNX model is saved as .onnx, got path {path}")
    height, width = spec.input_size
    signature = [keras.InputSpec(shape=(None, height, width, spec.channels), dtype="float32", name="image")]
    try:
        with tempfile.TemporaryDirectory(prefix="vc-onnx-") as tmp:
            raw = Path(tmp) / "model.onnx"
            quiet = logging.getLogger("tf2onnx")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)  # unsupported ops are reported through the ExportError
            try:
                with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                    # Keras's tf2onnx shim probes np.object on import: a NumPy FutureWarning, not ours.
                    warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
                    model.export(
                        str(raw), format="onnx", opset_version=opset, input_signature=signature, verbose=False
                    )
            finally:
                quiet.setLevel(level)
            graph_model = onnx.load(str(raw))
        onnx.checker.check_model(graph_model, full_check=True)
    except Exception as exc:
        raise converter_error("onnx", model, exc) from exc
    _rename_io(graph_model)
    graph_model.doc_string = f"visioncascade {spec.name}: labels {list(spec.labels)}"
    meta = graph_model.metadata_props.add()
    meta.key, meta.value = "visioncascade.spec", spec.to_json()
    onnx.checker.check_model(graph_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph_model, str(path))
    return path


def _rename_io(model) -> None:
    graph = model.graph
    renames = {graph.input[0].name: "image", graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    graph.input[0].name = "image"
    graph.output[0].name = "probabilities"
    for value in (graph.input[0], graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
