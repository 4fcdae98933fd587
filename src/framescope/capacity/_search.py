"""Which camera count to try next: doubling from one until a count fails (or the ceiling is reached), then
bisection between the largest that passed and the smallest that failed, until they are neighbours.

Pure bookkeeping: it is told each count's verdict and never runs anything. Monotone by assumption (a count
that fails is not tried above, one that passes not below): a machine that serves N cameras serves fewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CameraSearch:
    ceiling: int
    """The most cameras tried (``--max-cameras``)."""
    start: int = 1
    passed: dict[int, bool] = field(default_factory=dict)
    """Every count tried, and whether it passed."""

    def __post_init__(self) -> None:
        if self.start < 1 or self.ceiling < self.start:
            raise ValueError(f"start {self.start} and ceiling {self.ceiling}: 1 <= start <= ceiling")

    @property
    def best(self) -> int:
        """The most cameras that passed (0: not even ``start``)."""
        return max((n for n, ok in self.passed.items() if ok), default=0)

    @property
    def first_failed(self) -> int | None:
        """The fewest cameras that failed, if any did."""
        return min((n for n, ok in self.passed.items() if not ok), default=None)

    def record(self, cameras: int, passed: bool) -> None:
        self.passed[cameras] = passed

    def next_count(self) -> int | None:
        """The next camera count to try, or None when the answer is known."""
        if not self.passed:
            return self.start
        failed = self.first_failed
        best = self.best
        if failed is None:  # still doubling
            if best >= self.ceiling:
                return None
            return min(2 * best, self.ceiling)
        if failed - best <= 1:
            return None
        return (best + failed) // 2  # best is 0 when even the start failed: search below it

    @property
    def at_ceiling(self) -> bool:
        """Whether the answer is the ceiling: it passed, so the machine may serve more than was tried."""
        return self.best >= self.ceiling
