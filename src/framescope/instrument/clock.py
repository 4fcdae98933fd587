"""The clock every timing in framescope reads.

Timing, queueing and drop logic take a :data:`Clock` instead of calling ``time`` directly, so tests can
drive them with :class:`FakeClock` and assert exact durations without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A monotonic clock returning seconds as a float."""

monotonic: Clock = time.perf_counter
"""The default clock: the highest-resolution monotonic clock the OS offers."""


class FakeClock:
    """A clock that only moves when told to; calling it returns the current fake time in seconds."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"{seconds = } should be >= 0; a monotonic clock never goes back.")
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Stand-in for ``time.sleep`` that advances the fake time instead of waiting."""
        self.advance(max(0.0, seconds))
