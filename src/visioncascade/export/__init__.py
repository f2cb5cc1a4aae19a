"""Export stage: Core ML, TFLite and ONNX artifacts of a run, each proven equal to the Keras model.

* :func:`export_run` — export a run folder to ``exports/`` (atomically) with ``manifest.json``;
* :func:`validate_exports` — re-run the parity proof of an exports folder at any time;
* :func:`export_coreml`, :func:`export_tflite`, :func:`export_onnx` — one artifact from a Keras model;
* :class:`MILProgram` — load a saved ``.mlpackage`` with coremltools and execute it with NumPy
  (Core ML cannot run on Linux);
* :func:`export_sizes` — artifact bytes of a run (Core ML fp16, TFLite int8, ONNX fp32).

This stage imports ``data``, ``models`` and ``spec`` — never ``runtime`` or ``api``.
"""

from visioncascade.export._common import DEFAULT_PRECISION, FORMATS, PRECISIONS, SUPPORTED_PRECISIONS
from visioncascade.export._coreml import check_coreml_structure, export_coreml
from visioncascade.export._mil_interpreter import SUPPORTED_OPS, MILProgram
from visioncascade.export._onnx import OnnxRunner, export_onnx
from visioncascade.export._parity import LIMITS, MIN_TOP1_AGREEMENT, compare_probabilities, parity_frames
from visioncascade.export._run import ExportResult, export_run, export_sizes, validate_exports
from visioncascade.export._tflite import LiteRTRunner, export_tflite

__all__ = [
    "DEFAULT_PRECISION",
    "FORMATS",
    "LIMITS",
    "MIN_TOP1_AGREEMENT",
    "PRECISIONS",
    "SUPPORTED_OPS",
    "SUPPORTED_PRECISIONS",
    "ExportResult",
    "LiteRTRunner",
    "MILProgram",
    "OnnxRunner",
    "check_coreml_structure",
    "compare_probabilities",
    "export_coreml",
    "export_onnx",
    "export_run",
    "export_sizes",
    "export_tflite",
    "parity_frames",
    "validate_exports",
]
