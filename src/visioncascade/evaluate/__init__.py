"""Metrics, plots, timing and HTML reports.

``metrics`` and ``report`` need no TensorFlow; ``timing`` and ``plots`` are imported on their own.
"""

from visioncascade.evaluate.metrics import (
    INTERVAL_KEYS,
    SUMMARY_KEYS,
    bootstrap_intervals,
    compute_metrics,
    expected_calibration_error,
    minority_index,
    paired_bootstrap_differences,
    summarize_folds,
)

__all__ = [
    "INTERVAL_KEYS",
    "SUMMARY_KEYS",
    "bootstrap_intervals",
    "compute_metrics",
    "expected_calibration_error",
    "minority_index",
    "paired_bootstrap_differences",
    "summarize_folds",
]
