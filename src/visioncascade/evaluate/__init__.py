"""Metrics, plots, timing and HTML reports.

``metrics`` and ``report`` need no TensorFlow; ``timing`` and ``plots`` are imported on their own.
"""

from visioncascade.evaluate.metrics import (
    SUMMARY_KEYS,
    compute_metrics,
    expected_calibration_error,
    minority_index,
    summarize_folds,
)

__all__ = [
    "SUMMARY_KEYS",
    "compute_metrics",
    "expected_calibration_error",
    "minority_index",
    "summarize_folds",
]
