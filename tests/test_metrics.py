"""Bootstrap intervals of the test metrics: each resample's figures equal scikit-learn's on those images."""

from __future__ import annotations

import numpy as np
import pytest

from visioncascade.evaluate import (
    INTERVAL_KEYS,
    bootstrap_intervals,
    compute_metrics,
    paired_bootstrap_differences,
)
from visioncascade.evaluate.metrics import _bootstrap_counts, _resampled_metrics


def _predictions(num_classes: int, n: int = 157, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels (every class present) and probabilities rounded to 2 digits, so that scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    y[:num_classes] = np.arange(num_classes)
    logits = rng.normal(size=(n, num_classes)) + 1.5 * np.eye(num_classes)[y]
    p = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)
    return y, p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_each_resample_gives_what_scikit_learn_gives_on_the_resampled_images(num_classes: int):
    y, p = _predictions(num_classes)
    labels = tuple("abc"[:num_classes])
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) < num_classes:
            continue
        counts = np.bincount(index, minlength=len(y))[None]
        ours = _resampled_metrics(y, p, 0, counts)
        theirs = compute_metrics(y[index], p[index], labels, 0)
        for key in INTERVAL_KEYS:
            assert ours[key][0] == pytest.approx(theirs[key], abs=1e-12), key
        checked += 1
    assert checked > 50
    # The whole set once (every count 1) is the point estimate.
    whole = _resampled_metrics(y, p, 0, np.ones((1, len(y)), dtype=np.int64))
    for key in INTERVAL_KEYS:
        assert whole[key][0] == pytest.approx(compute_metrics(y, p, labels, 0)[key], abs=1e-12)


def test_counts_keep_each_class_count_in_bounded_chunks():
    y = np.repeat([0, 1, 2], [40_000, 9_000, 1_000])
    chunks = _bootstrap_counts(y, 250, seed=3)
    assert sum(len(c) for c in chunks) == 250 and len(chunks) > 1  # 4M cells at most per chunk
    for counts in chunks:
        for c, size in enumerate((40_000, 9_000, 1_000)):
            assert (counts[:, y == c].sum(axis=1) == size).all()
        assert counts.min() == 0 and counts.max() > 1  # with replacement: some drawn twice, some never


def test_intervals_hold_the_figure_narrow_with_more_images_and_repeat_for_a_seed():
    y, p = _predictions(2, n=150)
    point = compute_metrics(y, p, ("a", "b"), 0)
    small = bootstrap_intervals(y, p, 0)
    for key in INTERVAL_KEYS:
        low, high = small[key]
        assert 0.0 <= low < point[key] < high <= 1.0, key
    assert bootstrap_intervals(y, p, 0) == small  # seeded: same predictions, same intervals
    assert bootstrap_intervals(y, p, 0, seed=1) != small
    big = bootstrap_intervals(np.tile(y, 16), np.tile(p, (16, 1)), 0)  # same figures, 16x the images
    for key in INTERVAL_KEYS:
        assert (big[key][1] - big[key][0]) < 0.4 * (small[key][1] - small[key][0]), key


def test_a_rare_class_keeps_its_images_in_every_resample():
    # 3 minority images of 40, all found, and 5 false alarms: an unstratified bootstrap drew none of the
    # 3 in 4% of its resamples and gave minority F1 an interval from 0.0; each resample keeps all 3 here.
    y = np.zeros(40, dtype=np.int64)
    y[:3] = 1
    p = np.where(y[:, None] == 1, [0.1, 0.9], [0.8, 0.2])
    p[3:8] = [0.4, 0.6]  # five false alarms
    intervals = bootstrap_intervals(y, p, 1)
    assert intervals["roc_auc"] == [1.0, 1.0]  # every resample ranks its 3 minority images first
    low, high = intervals["minority_f1"]
    assert 0.3 < low < 6 / 11 < high < 0.9  # 2·3 / (2·3 + 5) on the whole set


def test_an_auc_for_a_class_without_images_has_no_interval():
    y, p = _predictions(3, n=40)
    y[y == 2] = 0  # three classes predicted, two present
    intervals = bootstrap_intervals(y, p, 1)
    assert intervals["roc_auc"] is None and intervals["accuracy"] is not None


def test_paired_differences_of_a_model_with_itself_are_exactly_zero():
    y, p = _predictions(2)
    same = paired_bootstrap_differences(y, p, p, 0)
    assert all(d == {"difference": 0.0, "interval": [0.0, 0.0]} for d in same.values())


def test_paired_differences_tell_a_better_model_apart_and_are_b_minus_a():
    y, p = _predictions(2, n=300)
    worse = 0.5 * p + 0.5 * np.random.default_rng(5).dirichlet([1, 1], len(y))
    labels = ("a", "b")
    paired = paired_bootstrap_differences(y, worse, p, 0)
    for key in INTERVAL_KEYS:
        expected = compute_metrics(y, p, labels, 0)[key] - compute_metrics(y, worse, labels, 0)[key]
        assert paired[key]["difference"] == pytest.approx(expected, abs=1e-12)
    low, high = paired["roc_auc"]["interval"]
    assert 0 < low < paired["roc_auc"]["difference"] < high
    # Paired resampling is narrower than two separate intervals side by side would suggest.
    separate = bootstrap_intervals(y, p, 0)["roc_auc"], bootstrap_intervals(y, worse, 0)["roc_auc"]
    assert high - low < (separate[0][1] - separate[0][0]) + (separate[1][1] - separate[1][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resamples": 10}, "resamples must be an integer of at least 100, got 10"),
        ({"level": 95}, r"level must be in \(0, 1\), e.g. 0.95, got 95"),
    ],
)
def test_bad_bootstrap_settings_are_refused(kwargs: dict, message: str):
    y, p = _predictions(2, n=20)
    with pytest.raises(ValueError, match=message):
        bootstrap_intervals(y, p, 0, **kwargs)


def test_paired_differences_need_the_same_images():
    y, p = _predictions(2, n=20)
    with pytest.raises(
        ValueError, match=r"both models must score the same images: .*\(20, 2\) and \(19, 2\)"
    ):
        paired_bootstrap_differences(y, p, p[:-1], 0)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_balanced_accuracy_is_scikit_learns_and_quiet_on_one_class(num_classes: int):
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    labels = tuple("abcde"[:num_classes])
    for seed in range(20):
        y, p = _predictions(num_classes, n=int(np.random.default_rng(seed).integers(8, 60)), seed=seed)
        want = balanced_accuracy_score(y, p.argmax(1))
        assert compute_metrics(y, p, labels, 0)["balanced_accuracy"] == pytest.approx(want, abs=1e-12)
    y, p = _predictions(num_classes)
    one = y == 0  # a subset with one class (the test images left after dropping look-alikes can be)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns "A single label was found" here
        figures = compute_metrics(y[one], p[one], labels, 0)
    assert figures["balanced_accuracy"] == pytest.approx(figures["per_class"]["a"]["recall"])
    assert figures["roc_auc"] is None
