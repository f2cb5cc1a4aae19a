"""The one exception hierarchy of visioncascade.

Every error a user can cause derives from :class:`VisionCascadeError`; its message says what was wrong
and how to fix it. The CLI prints the message and exits with status 2 for these, so a traceback always
means a bug in visioncascade.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ConfigError",
    "DataError",
    "ExportError",
    "ModelError",
    "RulesError",
    "RunExistsError",
    "RunNotFoundError",
    "StorageError",
    "VisionCascadeError",
]


class VisionCascadeError(Exception):
    """Base class of every error visioncascade raises for bad input or a bad environment."""


class DataError(VisionCascadeError):
    """A dataset could not be read or is unusable (missing folders, corrupt images, bad .npz keys...)."""


class ConfigError(VisionCascadeError):
    """An option or configuration value is invalid (unknown architecture, bad fold count...)."""


class ModelError(VisionCascadeError):
    """A model or its weights cannot be built or loaded (weights that do not fit the architecture...)."""


class RunExistsError(VisionCascadeError):
    """The output folder already holds a run and ``overwrite`` was not asked for."""


class RunNotFoundError(VisionCascadeError):
    """A run folder is missing or lacks ``model.keras`` / ``spec.json``."""


class ExportError(VisionCascadeError):
    """An export or its parity proof failed."""


class ApiError(VisionCascadeError):
    """The prediction API cannot start or run as configured (unsafe settings, bad server options...)."""


class StorageError(VisionCascadeError):
    """The API's database is unreachable, not migrated, or refused an operation."""


class RulesError(VisionCascadeError):
    """A rules file is missing, not valid YAML, or breaks the rules schema."""
