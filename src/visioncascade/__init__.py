"""visioncascade: train, report, export and cascade small image classifiers for phone apps.

Heavy modules (TensorFlow, onnxruntime, FastAPI) load lazily: importing ``visioncascade`` is cheap, and
the names below resolve to their implementation on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from visioncascade.errors import (
    ConfigError,
    DataError,
    ExportError,
    ModelError,
    RunExistsError,
    RunNotFoundError,
    VisionCascadeError,
)
from visioncascade.spec import ModelSpec

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "visioncascade.data",
    "Dataset": "visioncascade.data",
    "create_model": "visioncascade.models",
    "list_architectures": "visioncascade.models",
    "TrainConfig": "visioncascade.train",
    "train_run": "visioncascade.experiment",
    "evaluate_run": "visioncascade.experiment",
    "compare": "visioncascade.experiment",
}

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "ExportError",
    "ModelError",
    "ModelSpec",
    "RunExistsError",
    "RunNotFoundError",
    "TrainConfig",
    "VisionCascadeError",
    "__version__",
    "compare",
    "create_model",
    "evaluate_run",
    "list_architectures",
    "load_dataset",
    "train_run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visioncascade' has no attribute {name!r}")
