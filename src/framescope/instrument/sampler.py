"""How many of this process's threads wanted to run, sampled while a run goes.

More runnable threads than bound cores means threads take turns, and every stage time includes the waiting.
Spinning OpenMP workers count as runnable, which is exactly the contention that makes a small CNN several
times slower when another thread is busy. Sampled from /proc (Linux) a few times a second.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

INTERVAL_S = 0.2


def runnable_threads(pid: int | None = None) -> int | None:
    """Threads of ``pid`` (this process) in state R now; None where /proc is unavailable."""
    base = f"/proc/{pid or os.getpid()}/task"
    try:
        tasks = os.listdir(base)
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            with open(f"{base}/{task}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"R":
                    count += 1
        except (OSError, IndexError):
            continue
    return count


@dataclass
class RunnableSampler:
    """``with RunnableSampler(cores) as sampler:`` samples in a daemon thread until the block ends."""

    cores: int
    interval_s: float = INTERVAL_S
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = runnable_threads()
            if value is None:
                return
            self.samples.append(value)

    def __enter__(self) -> RunnableSampler:
        self._thread = threading.Thread(target=self._run, name="framescope-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        data = np.asarray(self.samples)
        return {
            "runnable_p50": float(np.percentile(data, 50)),
            "runnable_p90": float(np.percentile(data, 90)),
            "oversubscribed_share": float((data > self.cores).mean()),
        }

    def warnings(self) -> list[str]:
        stats = self.summary()
        if stats is None or stats["oversubscribed_share"] < 0.25:
            return []
        return [
            f"more of this process's threads wanted to run than there are cores ({self.cores}) in "
            f"{100 * stats['oversubscribed_share']:.0f}% of samples (p90: {stats['runnable_p90']:.0f} "
            "runnable): they take turns and stage times include the waiting; lower --torch-threads or "
            "--decode-threads."
        ]
