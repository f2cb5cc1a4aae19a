"""Fitting, callbacks, calibration and the training configuration."""

from visioncascade.train.calibration import apply_temperature, fit_temperature
from visioncascade.train.config import QUICK, TrainConfig

__all__ = ["QUICK", "TrainConfig", "apply_temperature", "fit_temperature"]
