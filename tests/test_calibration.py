"""Calibration: the temperature and the prior correction of class-weighted models, on known truths."""

from __future__ import annotations

import numpy as np
import pytest

from visioncascade.train.calibration import (
    MIN_CALIBRATION_IMAGES,
    Calibration,
    apply_calibration,
    fit_calibration,
    fit_temperature,
)
from visioncascade.train.fit import class_weights


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _world(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True log-posteriors (up to a constant) and labels drawn from them: calibrated by construction.

    Class 0 is common; the others are rare (about 1:3 overall), like BreastMNIST's benign vs malignant.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, classes))
    logits[:, 0] += 1.5
    truth = _softmax(logits)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    return logits, labels


@pytest.mark.parametrize("classes", [2, 3])
def test_the_prior_shift_of_class_weights_is_found_and_taken_back(classes: int):
    """A model that learnt the class-weighted prior (log-odds up by log w) and is too confident (x1.6)."""
    logits, labels = _world(6000, classes)
    weights = class_weights(labels, classes)
    log_w = np.log([weights[c] for c in range(classes)])
    model = _softmax(1.6 * (logits + log_w))
    calibration = fit_calibration(model, labels, weights)
    assert calibration.prior_correction == pytest.approx(1.0, abs=0.1)
    assert calibration.temperature == pytest.approx(1.6, rel=0.08)
    assert len(calibration.offsets) == classes
    corrected = apply_calibration(model, calibration)
    truth = _softmax(logits)
    assert np.abs(corrected - truth).mean() < 0.02
    # The temperature alone cannot move the decision threshold back: it leaves a biased mean probability.
    temperature_only = apply_calibration(model, Calibration(temperature=fit_temperature(model, labels)))
    rate = np.bincount(labels, minlength=classes) / len(labels)
    assert np.abs(corrected.mean(axis=0) - rate).max() < 0.02
    assert np.abs(temperature_only.mean(axis=0) - rate).max() > 0.05


def test_a_model_without_the_shift_gets_little_or_no_correction():
    logits, labels = _world(6000, 2, seed=1)
    weights = class_weights(labels, 2)
    calibration = fit_calibration(_softmax(1.4 * logits), labels, weights)
    assert calibration.prior_correction < 0.1
    assert calibration.temperature == pytest.approx(1.4, rel=0.08)


def test_without_class_weights_it_is_temperature_scaling():
    logits, labels = _world(3000, 2, seed=2)
    probabilities = _softmax(2.0 * logits)
    for weights in (None, {0: 1.0, 1: 1.0}):
        calibration = fit_calibration(probabilities, labels, weights)
        assert calibration == Calibration(temperature=fit_temperature(probabilities, labels))
        assert calibration.offsets == ()


def test_too_few_images_leave_the_model_as_it_is():
    logits, labels = _world(MIN_CALIBRATION_IMAGES - 1, 2, seed=3)
    probabilities = _softmax(3.0 * logits)
    calibration = fit_calibration(probabilities, labels, class_weights(labels, 2))
    assert calibration == Calibration()
    np.testing.assert_allclose(apply_calibration(probabilities, calibration), probabilities, atol=1e-9)


def test_the_correction_never_raises_the_validation_log_loss():
    def log_loss(p: np.ndarray, y: np.ndarray) -> float:
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))

    for seed in range(5):
        logits, labels = _world(60, 2, seed=10 + seed)  # small, noisy validation sets
        weights = class_weights(labels, 2)
        probabilities = _softmax(logits + np.log([weights[0], weights[1]]) * 0.5)
        calibration = fit_calibration(probabilities, labels, weights)
        temperature_only = Calibration(temperature=fit_temperature(probabilities, labels))
        assert 0.0 <= calibration.prior_correction <= 1.0
        assert (
            log_loss(apply_calibration(probabilities, calibration), labels)
            <= log_loss(apply_calibration(probabilities, temperature_only), labels) + 1e-12
        )
