"""Calibration: temperature scaling, and undoing the prior shift of class-weighted training.

A model's softmax is calibrated to ``softmax(logits / T + offsets)``. ``T`` (the temperature) fixes its
confidence; ``offsets`` fix its prior. Class weights ``w_c`` make training act as if class ``c`` were
``w_c`` times as frequent as it is, and a model trained long enough learns that prior: its log-odds for
class ``c`` rise by ``log w_c`` (Bayes' rule). ``offsets = -alpha * log(w)`` with ``alpha`` in [0, 1]
takes back the share ``alpha`` of that shift that the validation data shows is there. Early-stopped
models keep little of it (alpha near 0); models trained on with weight averaging most of it (alpha
around 0.8 on BreastMNIST; BENCHMARKS.md). Both are fitted on validation data by log loss, so that
"probability > 0.5" means what it says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

__all__ = [
    "MIN_CALIBRATION_IMAGES",
    "Calibration",
    "apply_calibration",
    "apply_temperature",
    "fit_calibration",
    "fit_temperature",
]

_EPS = 1e-12
#: Fewer validation images than this and no temperature is fitted (it would just memorise them).
MIN_CALIBRATION_IMAGES = 30
_BOUNDS = (0.25, 8.0)


@dataclass(frozen=True)
class Calibration:
    """What :func:`fit_calibration` found: ``softmax(logits / temperature + offsets)``.

    ``prior_correction`` is ``alpha``, the share of the class weights' log-prior shift taken back
    (``offsets = -alpha * log(class weights)``); 0 and all-zero offsets when there were no class weights.
    """

    temperature: float = 1.0
    prior_correction: float = 0.0
    offsets: tuple[float, ...] = ()

    def offsets_for(self, num_classes: int) -> np.ndarray:
        """The offsets as an array of ``num_classes`` (zeros when there are none)."""
        return np.asarray(self.offsets, np.float64) if self.offsets else np.zeros(num_classes)


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, _EPS, 1.0))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Re-scale softmax outputs as if their logits had been divided by ``temperature``."""
    return _softmax(_logits(probabilities) / temperature)


def apply_calibration(probabilities: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Softmax outputs (made at T = 1, no offsets) as the calibrated model would give them."""
    offsets = calibration.offsets_for(probabilities.shape[1])
    return _softmax(_logits(probabilities) / calibration.temperature + offsets)


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


def fit_calibration(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_weight: Mapping[int, float] | None = None,
) -> Calibration:
    """Fit the temperature and, for a model trained with ``class_weight``, the prior correction.

    Minimises the validation log loss of ``softmax(log(probabilities) / T - alpha * log(w))`` over
    ``T`` in [0.25, 8] and ``alpha`` in [0, 1]. Without class weights (or with equal ones) this is
    :func:`fit_temperature`. Fewer than :data:`MIN_CALIBRATION_IMAGES` images: no calibration at all.
    Never returns a calibration with a higher log loss than none.
    """
    num_classes = probabilities.shape[1]
    temperature = fit_temperature(probabilities, labels)
    weights = np.array([float((class_weight or {}).get(c, 1.0)) for c in range(num_classes)])
    shift = np.log(weights)
    if len(labels) < MIN_CALIBRATION_IMAGES or not np.all(np.isfinite(shift)) or np.ptp(shift) < 1e-9:
        return Calibration(temperature=temperature)
    shift -= shift.mean()  # only differences between classes matter
    logits = _logits(probabilities)
    low, high = np.log(_BOUNDS[0]), np.log(_BOUNDS[1])

    def loss(params: np.ndarray) -> float:
        log_t, alpha = float(np.clip(params[0], low, high)), float(np.clip(params[1], 0.0, 1.0))
        return _nll(_softmax(logits / np.exp(log_t) - alpha * shift), labels)

    start = np.array([np.log(temperature), 0.5])
    result = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    log_t, alpha = float(np.clip(result.x[0], low, high)), float(np.clip(result.x[1], 0.0, 1.0))
    if loss(np.array([log_t, alpha])) >= loss(np.array([np.log(temperature), 0.0])):
        return Calibration(temperature=temperature)  # the correction does not help on this data
    offsets = tuple(float(v) for v in -alpha * shift)
    return Calibration(temperature=float(np.exp(log_t)), prior_correction=alpha, offsets=offsets)
