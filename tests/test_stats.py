"""Statistics: checked against cases whose answer is known, and against seeded random data."""

from __future__ import annotations

import numpy as np
import pytest

from framescope.stats import (
    noise_floor,
    paired_ratio,
    ratio_of_medians,
    samples_for_percentile,
    stable,
    window_medians,
)


def test_the_ratio_of_medians_and_its_interval() -> None:
    rng = np.random.default_rng(1)
    baseline = rng.normal(100.0, 5.0, 200)
    slower = rng.normal(120.0, 5.0, 200)
    ratio = ratio_of_medians(baseline, slower)
    assert ratio.value == pytest.approx(1.2, abs=0.02)
    assert ratio.low < ratio.value < ratio.high and ratio.excludes(1.0)
    same = ratio_of_medians(baseline, rng.normal(100.0, 5.0, 200))
    assert not same.excludes(1.0)


def test_paired_ratios_cancel_a_drifting_machine() -> None:
    """Each round's pair ran side by side: the machine's drift (x0.7 to x1.3) moves both alike."""
    drift = np.linspace(0.7, 1.3, 12)
    ratio = paired_ratio(100.0 * drift, 90.0 * drift)
    assert (
        ratio.value == pytest.approx(0.9)
        and ratio.low == pytest.approx(0.9)
        and ratio.high == pytest.approx(0.9)
    )
    with pytest.raises(ValueError, match="same, non-zero length"):
        paired_ratio([1.0], [1.0, 2.0])


def test_the_noise_floor_follows_the_data() -> None:
    rng = np.random.default_rng(2)
    quiet = noise_floor(rng.normal(100.0, 1.0, 400))
    noisy = noise_floor(rng.normal(100.0, 20.0, 400))
    assert quiet < 0.01 < noisy < 0.2
    assert noise_floor([1.0, 2.0]) == float("inf")  # too few to say anything


def test_stability_windows() -> None:
    assert window_medians([1, 2, 3, 4, 5, 6, 7], 3) == [2.0, 5.0]
    steady = [100.0] * 30
    assert stable(steady, window=10)
    assert not stable([100.0] * 20 + [150.0] * 10, window=10)
    assert not stable(steady[:20], window=10)  # only two windows


def test_a_percentile_needs_enough_samples() -> None:
    assert samples_for_percentile(99) == 1000
    assert samples_for_percentile(50, beyond=5) == 10
