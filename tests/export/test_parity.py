"""The parity verdict on known probabilities: the limits, and top-1 flips on near ties."""

from __future__ import annotations

import numpy as np
import pytest

from visioncascade.export import LIMITS, MIN_TOP1_AGREEMENT, compare_probabilities
from visioncascade.export._parity import failure_message


def _frames(n: int) -> list[str]:
    return [f"test[{i}] gray-frame 28x28" for i in range(n)]


def _decisive(n: int) -> np.ndarray:
    """``n`` frames that Keras calls with a wide margin, alternating classes."""
    p = np.where(np.arange(n) % 2 == 0, 0.9, 0.1)
    return np.stack([p, 1 - p], axis=1)


def _int8_parity_with_one_frame(index: int, keras: list[float], artifact: list[float]) -> dict:
    """The int8 verdict on 50 decisive frames, frame ``index`` being ``keras`` / ``artifact``."""
    reference = _decisive(50)
    reference[index] = keras
    got = reference.copy()
    got[index] = artifact
    return compare_probabilities(reference, got, "int8", _frames(50))


def test_a_flip_on_a_near_tie_within_the_limit_passes_and_is_reported():
    # Keras 0.4996 / 0.5004 on frame 0 (what a real int8 export met), the artifact 0.5024 / 0.4976:
    # |Δp| 0.0028, far inside int8's 0.05, yet the top-1 flips.
    parity = _int8_parity_with_one_frame(0, [0.4996, 0.5004], [0.5024, 0.4976])
    assert parity["passed"] is True
    assert parity["top1_agreement"] == pytest.approx(49 / 50)  # over all frames: 98 %
    assert parity["top1_agreement"] < MIN_TOP1_AGREEMENT
    assert parity["top1_agreement_decisive"] == 1.0
    assert (parity["near_ties"], parity["near_tie_flips"]) == (1, 1)
    assert parity["near_tie_margin"] == pytest.approx(0.1)
    assert parity["max_abs_diff"] == pytest.approx(0.0028)


def test_a_flip_on_a_decisive_frame_fails_and_the_message_says_where():
    # Keras 0.56 / 0.44 (margin 0.12 > 2 × 0.05): flipping it takes |Δp| > 0.05.
    parity = _int8_parity_with_one_frame(7, [0.56, 0.44], [0.49, 0.51])
    assert parity["passed"] is False
    assert parity["near_ties"] == 0
    assert parity["top1_agreement_decisive"] == pytest.approx(49 / 50)
    message = failure_message("m-int8.tflite", parity, "int8")
    assert "max |Δp| 0.07 on test[7] gray-frame 28x28 (limit 0.05)" in message
    assert (
        "top-1 agreement 98.00% (needs ≥ 99%) over the 50 of 50 distinct inputs that are not near ties"
        in message
    )


@pytest.mark.parametrize("precision", sorted(LIMITS))
def test_the_near_tie_band_follows_the_precisions_limit(precision):
    limit = LIMITS[precision]
    reference = _decisive(4)
    reference[1] = [0.5 - 0.9 * limit, 0.5 + 0.9 * limit]  # margin 1.8 × limit: a near tie
    reference[2] = [0.5 - 1.1 * limit, 0.5 + 1.1 * limit]  # margin 2.2 × limit: decisive
    just_flipped = [0.5 + 0.05 * limit, 0.5 - 0.05 * limit]  # the least change that flips either
    got = reference.copy()
    got[1] = just_flipped  # |Δp| = 0.95 × limit: within the limit
    parity = compare_probabilities(reference, got, precision, _frames(4))
    assert parity["passed"] is True and parity["near_ties"] == 1 and parity["near_tie_flips"] == 1
    got[2] = just_flipped  # |Δp| = 1.15 × limit: over it
    parity = compare_probabilities(reference, got, precision, _frames(4))
    assert parity["passed"] is False and parity["top1_agreement_decisive"] == pytest.approx(2 / 3)


def test_non_finite_probabilities_fail():
    reference = _decisive(10)
    got = reference.copy()
    got[3] = [np.nan, np.nan]
    parity = compare_probabilities(reference, got, "fp32", _frames(10))
    assert parity["passed"] is False and parity["max_abs_diff"] == float("inf")
