"""Architectures behind one registry: ``create_model("scratch" | "mobilenet_v2", ...)``.

The registry (``get_architecture``, ``resolve_params``, ``list_architectures``) works without Keras; the
names that need it (``create_model`` when it builds, ``load_model``, ``save_model``, the layers) import it
when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visioncascade.models import mobilenet as _mobilenet  # noqa: F401  (registers mobilenet_v2)
from visioncascade.models import scratch as _scratch  # noqa: F401  (registers scratch)
from visioncascade.models.registry import (
    Architecture,
    create_model,
    get_architecture,
    list_architectures,
    register_architecture,
    resolve_params,
)

if TYPE_CHECKING:
    from visioncascade.models.io import load_model, save_model
    from visioncascade.models.layers import SobelEdges, TemperatureSoftmax

__all__ = [
    "Architecture",
    "SobelEdges",
    "TemperatureSoftmax",
    "create_model",
    "get_architecture",
    "list_architectures",
    "load_model",
    "register_architecture",
    "resolve_params",
    "save_model",
]

_NEEDS_KERAS = {
    "SobelEdges": "layers",
    "TemperatureSoftmax": "layers",
    "load_model": "io",
    "save_model": "io",
}


def __getattr__(name: str) -> Any:
    """Import Keras-backed names on first use (PEP 562)."""
    if name in _NEEDS_KERAS:
        value = getattr(importlib.import_module(f"visioncascade.models.{_NEEDS_KERAS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
