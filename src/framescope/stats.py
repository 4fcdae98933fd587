"""Statistics that stay honest on a noisy machine: medians, bootstrap confidence intervals for ratios of
medians, t intervals for paired rounds, a noise floor the data supports, stability windows, and percentiles
with the sample size they need.

Pure functions over numbers (NumPy, and SciPy's t distribution); nothing here runs, reads or prints
anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


@dataclass(frozen=True, slots=True)
class Ratio:
    """``candidate / baseline`` (of two medians, or paired rounds), with a confidence interval."""

    value: float
    low: float
    high: float
    confidence: float

    def excludes(self, level: float) -> bool:
        """Whether the whole interval lies on one side of ``level`` (1.0: no change)."""
        return self.low > level or self.high < level


def ratio_of_medians(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Ratio:
    """The ratio of the candidate's median to the baseline's, with a percentile-bootstrap interval from
    resampling each sample with replacement (independent samples: per-step times of two runs)."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    rng = np.random.default_rng(seed)
    a_medians = np.median(rng.choice(a, size=(resamples, a.size), replace=True), axis=1)
    b_medians = np.median(rng.choice(b, size=(resamples, b.size), replace=True), axis=1)
    ratios = b_medians / a_medians
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return Ratio(float(np.median(b) / np.median(a)), float(low), float(high), confidence)


def paired_ratio(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
) -> Ratio:
    """The geometric mean of per-pair ratios (rounds run side by side: A B, B A, ...) with a Student-t
    interval on their logarithms: the drift of a shared machine between rounds cancels within each pair,
    and three rounds give an interval as wide as three rounds can support (a bootstrap of three values
    would claim their range). One pair gives no interval (0 to infinity)."""
    from scipy import stats as scipy_stats

    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size != b.size or a.size == 0:
        raise ValueError("paired samples need the same, non-zero length")
    logs = np.log(b / a)
    centre = float(np.exp(logs.mean()))
    if logs.size < 2:
        return Ratio(centre, 0.0, math.inf, confidence)
    half = float(
        scipy_stats.t.ppf(0.5 + confidence / 2, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size)
    )
    return Ratio(centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)), confidence)


def noise_floor(samples: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """How far apart two halves of one run's samples may land by chance: the 95th percentile of
    ``|1 - median(half A) / median(half B)|`` over random splits. A change smaller than this is not a change
    this data can show, whatever a fixed threshold says."""
    data = np.asarray(samples, dtype=float)
    if data.size < 4:
        return math.inf
    rng = np.random.default_rng(seed)
    half = data.size // 2
    gaps = np.empty(resamples)
    for index in range(resamples):
        order = rng.permutation(data.size)
        first, second = data[order[:half]], data[order[half : 2 * half]]
        gaps[index] = abs(1 - np.median(first) / np.median(second))
    return float(np.quantile(gaps, 0.95))


def window_medians(values: Sequence[float], window: int) -> list[float]:
    """Medians of consecutive, non-overlapping windows of ``window`` values (a last partial one dropped)."""
    data = np.asarray(values, dtype=float)
    count = data.size // window
    return [float(np.median(data[i * window : (i + 1) * window])) for i in range(count)]


def stable(values: Sequence[float], *, window: int, windows: int = 3, tolerance: float = 0.10) -> bool:
    """Perf-analyzer's rule on rates: the last ``windows`` consecutive windows lie within ``tolerance`` of
    their mean."""
    medians = window_medians(values, window)
    if len(medians) < windows:
        return False
    last = np.asarray(medians[-windows:])
    centre = last.mean()
    return bool(centre > 0 and np.all(np.abs(last / centre - 1) <= tolerance))


def samples_for_percentile(percentile: float, *, beyond: int = 10) -> int:
    """How many samples a percentile needs to rest on ``beyond`` samples past it (p99 over 100 samples is the
    single largest one): ``beyond / (1 - p)``."""
    if not 0 < percentile < 100:
        raise ValueError(f"{percentile = } should be between 0 and 100")
    return math.ceil(beyond / (1 - percentile / 100))


@dataclass(frozen=True, slots=True)
class BoxStats:
    """A box plot's numbers (Tukey's): the quartiles, whiskers at the furthest samples within ``whisker``
    interquartile ranges of the box, and the samples beyond them."""

    q1: float
    median: float
    q3: float
    low: float
    """The lower whisker's end: the smallest sample at or above ``q1 - whisker * IQR``."""
    high: float
    """The upper whisker's end: the largest sample at or below ``q3 + whisker * IQR``."""
    outliers: tuple[float, ...]
    count: int


def box_stats(values: Sequence[float], *, whisker: float = 1.5) -> BoxStats:
    """Quartiles by linear interpolation, as the run summary's percentiles are computed (``np.percentile``),
    so a box's median is the summary's p50 of the same samples."""
    data = np.sort(np.asarray(values, dtype=float))
    if data.size == 0:
        raise ValueError("a box needs at least one value")
    q1, q2, q3 = np.percentile(data, (25, 50, 75))
    reach = whisker * (q3 - q1)
    inside = data[(data >= q1 - reach) & (data <= q3 + reach)]
    outliers = data[(data < q1 - reach) | (data > q3 + reach)]
    return BoxStats(
        q1=float(q1),
        median=float(q2),
        q3=float(q3),
        low=float(inside.min()),
        high=float(inside.max()),
        outliers=tuple(float(v) for v in outliers),
        count=int(data.size),
    )
