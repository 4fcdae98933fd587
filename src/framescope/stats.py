"""Statistics that stay honest on a noisy machine: medians, bootstrap confidence intervals for ratios of
medians, t intervals for paired rounds, a noise floor the data supports, stability windows, and percentiles
with the sample size they need.

Pure functions over numbers (NumPy, and SciPy's t distribution); nothing here runs, reads or prints
anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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


def block_length(size: int) -> int:
    """The block length of a moving-block bootstrap over ``size`` consecutive steps: ``size ** (1/3)``, the
    usual rate for keeping the correlation between neighbouring steps (a slow minute makes a run of slow
    steps) inside blocks."""
    return max(1, round(size ** (1 / 3)))


def block_indices(
    size: int, *, resamples: int, rng: np.random.Generator, block: int | None = None
) -> np.ndarray:
    """``resamples`` rows of ``size`` step indices, each made of consecutive (circular) blocks whose starts
    are drawn with replacement: a moving-block bootstrap, which keeps a run's drift and streaks in the
    resamples instead of shuffling them away as an independent bootstrap does."""
    block = block or block_length(size)
    count = math.ceil(size / block)
    starts = rng.integers(0, size, size=(resamples, count))
    return ((starts[:, :, None] + np.arange(block)) % size).reshape(resamples, count * block)[:, :size]


Statistic = Callable[..., np.ndarray]
"""Columns of resampled steps (each shaped ``(resamples, steps)``) -> one value per resample."""


def block_bootstrap_ratio(
    baseline: Sequence[npt.ArrayLike],
    candidate: Sequence[npt.ArrayLike],
    statistic: Statistic,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Ratio:
    """``statistic(candidate) / statistic(baseline)`` of two runs' per-step columns (e.g. frames and step
    times for a rate, or one stage's times for its median), with a percentile interval from moving-block
    resamples of each run's steps."""
    base = [np.asarray(column, dtype=float) for column in baseline]
    cand = [np.asarray(column, dtype=float) for column in candidate]
    if not base[0].size or not cand[0].size:
        raise ValueError("both samples need at least one value")
    rng = np.random.default_rng(seed)
    base_index = block_indices(base[0].size, resamples=resamples, rng=rng)
    cand_index = block_indices(cand[0].size, resamples=resamples, rng=rng)
    ratios = statistic(*(c[cand_index] for c in cand)) / statistic(*(c[base_index] for c in base))
    value = float(statistic(*(c[None, :] for c in cand))[0] / statistic(*(c[None, :] for c in base))[0])
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return Ratio(value, float(low), float(high), confidence)


def segment_drift(columns: Sequence[npt.ArrayLike], statistic: Statistic, *, segments: int = 4) -> float:
    """How far a run's own consecutive segments (quarters by default, at least 5 steps each) disagree:
    the largest ``|statistic(segment) / statistic(run) - 1|``. Two runs of one job cannot be told apart by
    less than each drifts within itself, so this is a noise floor the data itself supports; ``inf`` when
    there are too few steps to cut."""
    data = [np.asarray(column, dtype=float) for column in columns]
    size = data[0].size
    segments = min(segments, size // 5)
    if segments < 2:
        return math.inf
    whole = float(statistic(*(c[None, :] for c in data))[0])
    edges = np.linspace(0, size, segments + 1).astype(int)
    parts = [float(statistic(*(c[None, a:b] for c in data))[0]) for a, b in itertools.pairwise(edges)]
    return max(abs(part / whole - 1) for part in parts) if whole else math.inf


def median_of(values: np.ndarray) -> np.ndarray:
    """A :data:`Statistic`: the median of each resample."""
    return np.median(values, axis=-1)


def rate_of(frames: np.ndarray, milliseconds: np.ndarray) -> np.ndarray:
    """A :data:`Statistic`: frames per second of each resample (its frames over its time)."""
    return frames.sum(axis=-1) / (milliseconds.sum(axis=-1) / 1000.0)


def unpaired_ratio(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
) -> Ratio:
    """The ratio of the geometric means of two groups of independent runs (several runs of each side, not
    interleaved), with a Student-t interval on the difference of mean logarithms. The run-to-run variance
    is pooled from the sides that have at least two runs, so a single candidate run can be judged against
    several baseline runs: the baseline's runs show how far one run of this job strays. No side with two
    runs: no interval (0 to infinity)."""
    from scipy import stats as scipy_stats

    a = np.log(np.asarray(baseline, dtype=float))
    b = np.log(np.asarray(candidate, dtype=float))
    if a.size == 0 or b.size == 0:
        raise ValueError("both groups need at least one run")
    centre = float(np.exp(b.mean() - a.mean()))
    sides = [side for side in (a, b) if side.size >= 2]
    freedom = sum(side.size - 1 for side in sides)
    if not freedom:
        return Ratio(centre, 0.0, math.inf, confidence)
    variance = sum(float(((side - side.mean()) ** 2).sum()) for side in sides) / freedom
    error = math.sqrt(variance * (1 / a.size + 1 / b.size))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, freedom)) * error
    low, high = float(np.exp(b.mean() - a.mean() - half)), float(np.exp(b.mean() - a.mean() + half))
    return Ratio(centre, low, high, confidence)


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


TAIL_VERDICTS = ("within", "beyond", "undecided")


def tail_share(beyond: int, total: int, share: float, *, confidence: float = 0.95) -> str:
    """Whether the true share of samples past a bound is at most ``share``, from ``beyond`` of ``total``
    samples past it (MLPerf LoadGen's early-stopping idea, a one-sided exact binomial test): ``within`` when
    that few would be unlikely (probability at most ``1 - confidence``) were the share as large as
    ``share``; ``beyond`` when that many would be unlikely were it no larger; else ``undecided`` (more samples
    needed). A p99 under a bound is a share of 1 % past it; a share of 0 allows none."""
    from scipy.stats import binom

    if not 0 <= beyond <= total:
        raise ValueError(f"{beyond = } should be between 0 and {total = }")
    if not 0 <= share < 1 or not 0 < confidence < 1:
        raise ValueError(f"{share = } and {confidence = } should lie in [0, 1) and (0, 1)")
    if share == 0:
        return "beyond" if beyond else ("within" if total else "undecided")
    if total == 0:
        return "undecided"
    alpha = 1 - confidence
    if binom.cdf(beyond, total, share) <= alpha:
        return "within"
    if beyond and binom.sf(beyond - 1, total, share) <= alpha:
        return "beyond"
    return "undecided"


def samples_to_show_within(share: float, *, confidence: float = 0.95) -> int:
    """The fewest samples that can show a share past a bound is at most ``share`` (none of them past it):
    299 for a p99 (share 0.01) at 95 % confidence."""
    if not 0 < share < 1 or not 0 < confidence < 1:
        raise ValueError(f"{share = } and {confidence = } should lie in (0, 1)")
    return math.ceil(math.log(1 - confidence) / math.log(1 - share))


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


def pareto_front(throughput: Sequence[float], latency: Sequence[float]) -> list[int]:
    """The indices of the points no other point beats on both counts (a higher throughput at a latency no
    higher, or a lower latency at a throughput no lower), ordered by latency, lowest first."""
    if len(throughput) != len(latency):
        raise ValueError("throughput and latency need one value per point")
    front = []
    for i, (rate, wait) in enumerate(zip(throughput, latency, strict=True)):
        beaten = any(
            (other_rate >= rate and other_wait <= wait) and (other_rate > rate or other_wait < wait)
            for j, (other_rate, other_wait) in enumerate(zip(throughput, latency, strict=True))
            if j != i
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: (latency[i], -throughput[i]))


def knee(x: Sequence[float], y: Sequence[float]) -> int | None:
    """Kneedle (Satopää et al., 2011) on an increasing, concave curve, e.g. throughput ``y`` against p99
    latency ``x`` along a Pareto front: both scaled to [0, 1], the knee is the point furthest above the
    straight line from the first point to the last (the largest ``y_norm - x_norm``), where paying more
    latency stops buying as much throughput. Points ordered by ``x``; None for fewer than three points or a
    curve with no point above that line (no knee to find)."""
    if len(x) != len(y):
        raise ValueError("x and y need one value per point")
    if len(x) < 3:
        return None
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    xs = np.asarray(x, dtype=float)[order]
    ys = np.asarray(y, dtype=float)[order]
    x_span, y_span = xs[-1] - xs[0], ys.max() - ys.min()
    if x_span <= 0 or y_span <= 0:
        return None
    difference = (ys - ys.min()) / y_span - (xs - xs[0]) / x_span
    best = int(np.argmax(difference))
    return int(order[best]) if difference[best] > 0 else None
