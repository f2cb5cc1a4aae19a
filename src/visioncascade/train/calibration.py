"""Temperature scaling: one scalar that makes predicted probabilities honest on validation data."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["MIN_CALIBRATION_IMAGES", "apply_temperature", "fit_temperature"]

_EPS = 1e-12
#: Fewer validation images than this and no temperature is fitted (it would just memorise them).
MIN_CALIBRATION_IMAGES = 30
_BOUNDS = (0.25, 8.0)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Re-scale softmax outputs as if their logits had been divided by ``temperature``."""
    logits = np.log(np.clip(probabilities, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], _EPS, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.25, 8] that minimises validation log loss of ``probabilities`` (made at T=1).

    Returns 1.0 (no scaling) for fewer than :data:`MIN_CALIBRATION_IMAGES` images or when scaling does not
    lower the log loss.
    """
    if len(labels) < MIN_CALIBRATION_IMAGES:
        return 1.0

    def loss(log_t: float) -> float:
        return _nll(apply_temperature(probabilities, float(np.exp(log_t))), labels)

    result = minimize_scalar(loss, bounds=(np.log(_BOUNDS[0]), np.log(_BOUNDS[1])), method="bounded")
    temperature = float(np.exp(result.x))
    # Never make things worse than no scaling (flat optimum, tiny validation sets).
    return temperature if loss(result.x) < loss(0.0) else 1.0
