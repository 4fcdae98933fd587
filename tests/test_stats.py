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
    unpaired_ratio,
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


def test_three_rounds_claim_only_what_three_rounds_show() -> None:
    """Three pairs that disagree (1.00x to 1.14x) are no measured gain; three that agree (1.38x to 1.42x)
    are, with an interval about their spread; one pair has no interval."""
    scattered = paired_ratio([100.0, 100.0, 100.0], [100.4, 101.5, 114.0])
    assert scattered.low < 1.0 < scattered.high and not scattered.excludes(1.0)
    agreeing = paired_ratio([100.0, 90.0, 110.0], [140.0, 127.8, 151.8])
    assert agreeing.value == pytest.approx((1.40 * 1.42 * 1.38) ** (1 / 3))
    assert 1.3 < agreeing.low < 1.38 and 1.42 < agreeing.high < 1.5
    single = paired_ratio([100.0], [150.0])
    assert single.value == pytest.approx(1.5) and single.low == 0.0 and single.high == float("inf")


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


def test_independent_runs_are_judged_by_their_spread() -> None:
    """Runs 2 % apart on each side and a 20 % gap: slower, the interval around 0.8; runs 20 % apart and a
    10 % gap: nothing shown; one run a side: no interval at all."""
    tight = unpaired_ratio([100.0, 102.0, 98.0], [80.0, 81.0, 79.0])
    assert tight.value == pytest.approx(80 / (100 * 102 * 98) ** (1 / 3), rel=1e-3)
    assert tight.low < 0.8 < tight.high < 1.0
    loose = unpaired_ratio([100.0, 120.0, 85.0], [90.0, 105.0, 80.0])
    assert loose.low < 1.0 < loose.high
    single = unpaired_ratio([100.0], [80.0])
    assert (single.value, single.low, single.high) == (pytest.approx(0.8), 0.0, np.inf)
    one_candidate = unpaired_ratio([100.0, 102.0, 98.0], [80.0])  # the baseline's spread judges it
    assert one_candidate.high < 1.0


def test_a_tail_share_is_judged_with_the_confidence_its_samples_give() -> None:
    from framescope.stats import samples_to_show_within, tail_share

    assert samples_to_show_within(0.01) == 299  # LoadGen's figure for a p99 at 95 %: 0.99**299 < 0.05
    assert 0.99**299 <= 0.05 < 0.99**298
    assert tail_share(0, 299, 0.01) == "within" and tail_share(0, 298, 0.01) == "undecided"
    assert tail_share(1, 300, 0.01) == "undecided"  # one late frame in 300: not enough to say either way
    assert tail_share(2, 1000, 0.01) == "within"  # 0.2 % late over 1000 frames
    assert tail_share(10, 200, 0.01) == "beyond"  # 5 % late: a p99 over the bound, with confidence
    assert tail_share(3, 100, 0.01) == "undecided"
    # exact binomial tails, checked against a simulation of a true 1 % share
    draws = np.random.default_rng(0).binomial(1000, 0.01, 20_000)
    assert (draws <= 4).mean() <= 0.05 < (draws <= 5).mean()  # at 1 % late, 4 or fewer of 1000 is rare
    assert tail_share(4, 1000, 0.01) == "within" and tail_share(5, 1000, 0.01) == "undecided"
    assert tail_share(0, 10, 0.0) == "within" and tail_share(1, 10, 0.0) == "beyond"
    with pytest.raises(ValueError, match="beyond = 5 should be between 0 and total = 4"):
        tail_share(5, 4, 0.01)
