"""Architectures behind one registry: ``create_model("scratch" | "mobilenet_v2", ...)``."""

from visioncascade.models import mobilenet as _mobilenet  # noqa: F401  (registers mobilenet_v2)
from visioncascade.models import scratch as _scratch  # noqa: F401  (registers scratch)
from visioncascade.models.io import load_model, save_model
from visioncascade.models.layers import SobelEdges, TemperatureSoftmax
from visioncascade.models.registry import (
    Architecture,
    create_model,
    get_architecture,
    list_architectures,
    register_architecture,
    resolve_params,
)

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
