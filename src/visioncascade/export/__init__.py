"""Export stage: Core ML, TFLite and ONNX artifacts of a run, each proven equal to the Keras model.

* :func:`export_run` — export a run folder to ``exports/`` (atomically) with ``manifest.json``;
* :func:`validate_exports` — re-run the parity proof of an exports folder at any time;
* :func:`export_coreml`, :func:`export_tflite`, :func:`export_onnx` — one artifact from a Keras model;
* :class:`MILProgram` — load a saved ``.mlpackage`` with coremltools and execute it with NumPy
  (Core ML cannot run on Linux);
* :func:`export_sizes` — artifact bytes of a run (Core ML fp16, TFLite int8, ONNX fp32).

This stage imports ``data``, ``models`` and ``spec`` — never ``runtime`` or ``api``.
"""

import importlib
from typing import Any

#: TFLite int8 modes: ``full`` (integer, calibrated) and ``dynamic`` (dynamic-range). The default of every
#: entry point, library and CLI alike (here, not in ``_tflite``, so that the CLI reads it without TensorFlow).
INT8_MODES = ("full", "dynamic")
DEFAULT_INT8_MODE = "dynamic"
#: The fewest held-out images a parity proof may be asked to draw on (``--parity-images``); here for the CLI.
MIN_PARITY_IMAGES = 8

# Lazy: the CLI and the API import this package's cli without paying for TensorFlow and converters.
_LAZY = {
    "DEFAULT_PRECISION": "visioncascade.export._common",
    "ExportResult": "visioncascade.export._run",
    "FORMATS": "visioncascade.export._common",
    "LIMITS": "visioncascade.export._parity",
    "LiteRTRunner": "visioncascade.export._runners",
    "MILProgram": "visioncascade.export._mil_interpreter",
    "MIN_TOP1_AGREEMENT": "visioncascade.export._parity",
    "OnnxRunner": "visioncascade.export._runners",
    "PRECISIONS": "visioncascade.export._common",
    "SUPPORTED_OPS": "visioncascade.export._mil_interpreter",
    "SUPPORTED_PRECISIONS": "visioncascade.export._common",
    "check_coreml_structure": "visioncascade.export._coreml",
    "compare_probabilities": "visioncascade.export._parity",
    "export_coreml": "visioncascade.export._coreml",
    "export_onnx": "visioncascade.export._onnx",
    "export_run": "visioncascade.export._run",
    "export_sizes": "visioncascade.export._run",
    "export_tflite": "visioncascade.export._tflite",
    "parity_frames": "visioncascade.export._parity",
    "validate_exports": "visioncascade.export._run",
}

__all__ = [
    "DEFAULT_INT8_MODE",
    "DEFAULT_PRECISION",
    "FORMATS",
    "INT8_MODES",
    "LIMITS",
    "MIN_PARITY_IMAGES",
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visioncascade.export' has no attribute {name!r}")
