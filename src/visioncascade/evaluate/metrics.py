"""Classification metrics for imbalanced data (plain NumPy / scikit-learn, no TensorFlow)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

__all__ = [
    "SUMMARY_KEYS",
    "compute_metrics",
    "expected_calibration_error",
    "minority_index",
    "summarize_folds",
]

#: The scalar metrics averaged over folds and shown side by side in comparisons.
SUMMARY_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "minority_f1",
)

_EPS = 1e-12


def minority_index(train_labels: np.ndarray, num_classes: int) -> int:
    """Index of the class with the fewest training images (the first such, on ties)."""
    return int(np.argmin(np.bincount(train_labels, minlength=num_classes)))


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class probability: bin-weighted mean |accuracy - confidence| over ``bins`` bins."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        mask = (confidence > low) & (confidence <= high)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def _safe(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def compute_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...], minority: int
) -> dict[str, Any]:
    """Every metric of a ``metrics.json`` section for one set of predictions.

    ``probabilities`` is ``(N, K)``; ``minority`` the index of the minority class (see
    :func:`minority_index`). Metrics undefined for the data (ROC-AUC with one class present) are ``None``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(labels)
    y_pred = probabilities.argmax(axis=1)
    class_ids = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=class_ids, zero_division=0
    )
    present = np.unique(y_true)
    roc_auc = pr_auc = None
    if len(present) == num_classes:
        if num_classes == 2:
            roc_auc = roc_auc_score(y_true, probabilities[:, 1])
            pr_auc = average_precision_score(y_true == minority, probabilities[:, minority])
        else:
            roc_auc = roc_auc_score(
                y_true, probabilities, multi_class="ovr", average="macro", labels=class_ids
            )
            onehot = np.eye(num_classes)[y_true]
            pr_auc = average_precision_score(onehot, probabilities, average="macro")
    true_prob = np.clip(probabilities[np.arange(len(y_true)), y_true], _EPS, 1.0)
    onehot = np.eye(num_classes)[y_true]
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "roc_auc": _safe(roc_auc),
        "pr_auc": _safe(pr_auc),
        "log_loss": float(-np.mean(np.log(true_prob))),
        "brier": float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1))),
        "ece": expected_calibration_error(y_true, probabilities),
        "minority_label": labels[minority],
        "minority_f1": float(f1[minority]),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=class_ids).tolist(),
    }


def summarize_folds(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (ddof=1 when possible) of :data:`SUMMARY_KEYS` over fold metrics."""
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for key in SUMMARY_KEYS:
        values = [f[key] for f in folds if f.get(key) is not None]
        if not values:
            mean[key] = std[key] = None
            continue
        mean[key] = float(np.mean(values))
        std[key] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std}
