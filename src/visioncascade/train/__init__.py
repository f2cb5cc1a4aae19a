"""Fitting, callbacks, calibration and the training configuration."""

from visioncascade.train.calibration import (
    Calibration,
    apply_calibration,
    apply_temperature,
    fit_calibration,
    fit_temperature,
)
from visioncascade.train.config import QUICK, TrainConfig

__all__ = [
    "QUICK",
    "Calibration",
    "TrainConfig",
    "apply_calibration",
    "apply_temperature",
    "fit_calibration",
    "fit_temperature",
]
