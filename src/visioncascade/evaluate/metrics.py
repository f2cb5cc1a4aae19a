"""Classification metrics for imbalanced data (plain NumPy / scikit-learn, no TensorFlow)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "INTERVAL_KEYS",
    "SUMMARY_KEYS",
    "bootstrap_intervals",
    "compute_metrics",
    "expected_calibration_error",
    "minority_index",
    "paired_bootstrap_differences",
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

#: The metrics given a bootstrap confidence interval (``ci95`` of a test section).
INTERVAL_KEYS = ("accuracy", "balanced_accuracy", "roc_auc", "minority_f1")

#: Resamples of the bootstrap intervals unless told otherwise.
BOOTSTRAP_RESAMPLES = 2000

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
        # sklearn's balanced_accuracy_score, without its warning when a subset holds one class only
        "balanced_accuracy": float(np.mean(recall[present])),
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


def _weighted_auc(counts: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC-AUC of ``scores`` for ``positive`` under each row of image ``counts`` (B, N).

    The Mann-Whitney statistic with multiplicities: the share of (positive, negative) pairs ranked right,
    ties counting one half -- what ``roc_auc_score`` gives on the resampled images. NaN where a row has no
    positive or no negative image.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores, w = scores[order], counts[:, order].astype(np.float64)
    pos = positive[order]
    cum_neg = np.cumsum(w * ~pos, axis=1)
    cum_neg = np.concatenate([np.zeros((len(w), 1)), cum_neg], axis=1)  # cum_neg[:, k]: before k
    starts = np.searchsorted(sorted_scores, sorted_scores, side="left")  # each tie group's first index
    ends = np.searchsorted(sorted_scores, sorted_scores, side="right")  # ... and one past its last
    below = cum_neg[:, starts]
    tied = cum_neg[:, ends] - below
    hits = np.sum(w * pos * (below + 0.5 * tied), axis=1)
    pairs = np.sum(w * pos, axis=1) * np.sum(w * ~pos, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, hits / np.where(pairs > 0, pairs, 1.0), np.nan)


def _resampled_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, minority: int, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """:data:`INTERVAL_KEYS` for each row of ``counts`` (B, N): how often each image is drawn."""
    num_classes = probabilities.shape[1]
    y_pred = probabilities.argmax(axis=1)
    w = counts.astype(np.float64)
    correct = y_pred == y_true
    recalls = []
    for c in range(num_classes):
        in_class = w @ (y_true == c)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(in_class > 0, (w @ (correct & (y_true == c))) / in_class, np.nan))
    tp = w @ ((y_true == minority) & (y_pred == minority))
    fp = w @ ((y_true != minority) & (y_pred == minority))
    fn = w @ ((y_true == minority) & (y_pred != minority))
    denominator = 2 * tp + fp + fn
    if num_classes == 2:
        auc = _weighted_auc(counts, probabilities[:, 1], y_true == 1)
    else:  # macro one-vs-rest, defined only where every class is drawn
        auc = np.mean(
            [_weighted_auc(counts, probabilities[:, c], y_true == c) for c in range(num_classes)], 0
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (w @ correct) / w.sum(axis=1),
            "balanced_accuracy": np.nanmean(np.stack(recalls), axis=0),
            "roc_auc": auc,
            "minority_f1": np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0),
        }


def _bootstrap_counts(y_true: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """``resamples`` rows of draw counts of the images, in chunks of bounded memory.

    Stratified by class: each class's images are drawn with replacement as many times as the class has
    images, so every resample keeps the evaluated images' class counts (as a stratified split does).
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    sizes = [chunk] * (resamples // chunk) + ([resamples % chunk] if resamples % chunk else [])
    classes = [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
    chunks = []
    for size in sizes:
        counts = np.zeros((size, n), dtype=np.int64)
        for index in classes:
            counts[:, index] = rng.multinomial(len(index), np.full(len(index), 1.0 / len(index)), size=size)
        chunks.append(counts)
    return chunks


def _percentile_interval(samples: np.ndarray, level: float) -> list[float] | None:
    finite = samples[np.isfinite(samples)]
    if len(finite) < 0.9 * len(samples):  # undefined for too many resamples (a class barely present)
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _bootstrap_samples(
    y_true: np.ndarray, models: list[np.ndarray], minority: int, resamples: int, level: float, seed: int
) -> list[dict[str, np.ndarray]]:
    """Each model's :data:`INTERVAL_KEYS` on the same ``resamples`` bootstrap draws (arrays of that length)."""
    if not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an integer of at least 100, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    y_true = np.asarray(y_true, dtype=np.int64)
    chunks = [
        [_resampled_metrics(y_true, np.asarray(p, dtype=np.float64), minority, counts) for p in models]
        for counts in _bootstrap_counts(y_true, resamples, seed)
    ]
    return [
        {key: np.concatenate([chunk[i][key] for chunk in chunks]) for key in INTERVAL_KEYS}
        for i in range(len(models))
    ]


def bootstrap_intervals(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    minority: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """Percentile-bootstrap confidence intervals of :data:`INTERVAL_KEYS` over the evaluated images.

    The images are drawn with replacement ``resamples`` times (the model stays fixed), each class's
    images as many times as the class has images (a stratified bootstrap, as a stratified test split
    is drawn; pROC's default for ROC-AUC): the interval says how much a figure could move on another test
    set of the same size and class counts from the same source -- on a small test split (156 images for
    BreastMNIST) often more than the difference between two models. Keeping the class counts keeps
    ROC-AUC and minority-class F1 defined in every resample, also on a tiny test split with a handful of
    minority images. Seeded, so the same predictions give the same intervals. ``None`` where a metric is
    undefined for too many resamples (ROC-AUC when a class has no evaluated images).
    """
    (samples,) = _bootstrap_samples(y_true, [probabilities], minority, resamples, level, seed)
    return {key: _percentile_interval(samples[key], level) for key in INTERVAL_KEYS}


def paired_bootstrap_differences(
    y_true: np.ndarray,
    probabilities_a: np.ndarray,
    probabilities_b: np.ndarray,
    minority: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Model B minus model A on the same images: each metric's difference and its paired bootstrap interval.

    Both models are scored on the same resamples, so the interval reflects how differently they rank the
    same images (narrower than comparing two separate intervals). An interval that holds 0 means this test
    set cannot tell the two apart on that metric.
    """
    shape_a, shape_b = np.shape(probabilities_a), np.shape(probabilities_b)
    if shape_a != shape_b or shape_a[0] != len(y_true):
        raise ValueError(
            f"both models must score the same images: got probabilities of shapes {shape_a} and "
            f"{shape_b} for {len(y_true)} labels"
        )
    a, b = _bootstrap_samples(y_true, [probabilities_a, probabilities_b], minority, resamples, level, seed)
    full = np.ones((1, len(y_true)), dtype=np.int64)
    y = np.asarray(y_true, dtype=np.int64)
    point_a = _resampled_metrics(y, np.asarray(probabilities_a, dtype=np.float64), minority, full)
    point_b = _resampled_metrics(y, np.asarray(probabilities_b, dtype=np.float64), minority, full)
    out: dict[str, dict[str, Any]] = {}
    for key in INTERVAL_KEYS:
        value = float(point_b[key][0] - point_a[key][0])
        out[key] = {
            "difference": value if math.isfinite(value) else None,
            "interval": _percentile_interval(b[key] - a[key], level),
        }
    return out
