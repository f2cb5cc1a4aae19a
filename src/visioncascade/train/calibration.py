"""Temperature scaling: one scalar that makes predicted probabilities honest on validation data."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["apply_temperature", "fit_temperature"]

_EPS = 1e-12


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Re-scale softmax outputs as if their logits had been divided by ``temperature``."""
    logits = np.log(np.clip(probabilities, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], _EPS, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises validation log loss of ``probabilities`` (made at T=1)."""

    def loss(log_t: float) -> float:
        return _nll(apply_temperature(probabilities, float(np.exp(log_t))), labels)

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    temperature = float(np.exp(result.x))
    # Never make things worse than no scaling (flat optimum, tiny validation sets).
    return temperature if loss(result.x) < loss(0.0) else 1.0
