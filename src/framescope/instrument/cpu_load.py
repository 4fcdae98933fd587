"""Who else used our cores: per-core busy time minus this process's own CPU time, and hypervisor steal.

A profile taken while other processes compete for the same cores measures the competition as much as the
pipeline. The load average lags by a minute and counts cores we do not use; this measures exactly the bound
cores over exactly the window of interest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from framescope.instrument.clock import Clock, monotonic


@dataclass(frozen=True, slots=True)
class CpuLoad:
    """CPU use of a window, in cores (1.0 = one core fully busy for the whole window)."""

    seconds: float
    cores: int
    ours: float
    """This process (all threads)."""
    others: float
    """Everything else on the same cores."""
    steal: float
    """Time the hypervisor gave our cores to other virtual machines."""


def core_count(cores: list[int] | None) -> int:
    """How many cores ``cores`` names; every core of the machine where the OS cannot tell (None)."""
    return len(cores) if cores else (os.cpu_count() or 1)


def _busy_and_steal(cores: list[int] | None) -> tuple[float, float]:
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = [per_cpu[i] for i in cores if i < len(per_cpu)] if cores else per_cpu
    busy = sum(t.user + t.nice + t.system + t.irq + t.softirq for t in chosen)
    steal = sum(getattr(t, "steal", 0.0) for t in chosen)
    return busy, steal


def _own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuLoadMeter:
    """``meter = CpuLoadMeter(cores); ...; load = meter.read()`` measures the window in between."""

    def __init__(self, cores: list[int] | None = None, clock: Clock = monotonic) -> None:
        self.cores = cores
        self.clock = clock
        self._process = psutil.Process(os.getpid())
        self.restart()

    def restart(self) -> None:
        self._start = self.clock()
        self._busy, self._steal = _busy_and_steal(self.cores)
        self._own = _own_cpu(self._process)

    def read(self) -> CpuLoad:
        seconds = max(self.clock() - self._start, 1e-9)
        busy, steal = _busy_and_steal(self.cores)
        own = _own_cpu(self._process) - self._own
        others = max(0.0, (busy - self._busy) - own)
        return CpuLoad(
            seconds=seconds,
            cores=core_count(self.cores),
            ours=own / seconds,
            others=others / seconds,
            steal=max(0.0, steal - self._steal) / seconds,
        )


def load_warnings(load: CpuLoad, when: str) -> list[str]:
    """Warnings worth a user's attention for a measured window (``when``: "during set-up", ...)."""
    warnings = []
    if load.seconds >= 0.2 and load.others >= 0.25:
        warnings.append(
            f"other processes kept {load.others:.2f} of the {load.cores} bound core(s) busy {when}: they "
            "compete with the pipeline and inflate its timings; profile on a quiet machine or bind other "
            "cores."
        )
    if load.seconds >= 0.2 and load.steal >= 0.1:
        warnings.append(
            f"the hypervisor took {load.steal:.2f} core(s) away from this VM {when} (steal time): timings "
            "include waiting for the host; compare runs side by side."
        )
    return warnings
