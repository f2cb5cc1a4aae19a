"""Loading saved models with visioncascade's custom layers registered."""

from __future__ import annotations

from pathlib import Path

import keras

from visioncascade.errors import RunNotFoundError
from visioncascade.models import layers as _layers  # noqa: F401  (registers the custom layers)

__all__ = ["load_model", "save_model"]


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` model (or ``model.keras`` in a run folder) without compiling it."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise RunNotFoundError(f"no model at {path}: expected a model.keras written by `visioncascade train`")
    return keras.saving.load_model(path, compile=False)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save ``model`` as ``.keras`` without optimizer state (a deployable model, a third of the bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # from_config builds an uncompiled twin (clone_model would copy the optimizer along).
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(path)
    return path
