"""Who else used our cores: per-core busy time minus this process's own CPU time, and hypervisor steal.

A profile taken while other processes compete for the same cores measures the competition as much as the
pipeline. The load average lags by a minute and counts cores we do not use; this measures exactly the bound
cores over exactly the window of interest.

The kernel counts CPU time in clock ticks (10 ms on most Linux systems), per core and per process, so over a
short window the difference of two readings is mostly rounding: a 2 ms window in which one core ticked twice
reads as "9 cores busy". A window shorter than :data:`MIN_WINDOW_S` is therefore not measured at all, and a
longer one is clamped to what the cores can physically do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from framescope.instrument.clock import Clock, monotonic

MIN_WINDOW_S = 1.0
"""The shortest window whose CPU shares are reported: at 100 ticks a second, the rounding of three counters
is then at most about 0.03 of a core."""


@dataclass(frozen=True, slots=True)
class CpuLoad:
    """CPU use of a window, in cores (1.0 = one core fully busy for the whole window); None when the window
    was too short to measure (see :data:`MIN_WINDOW_S`)."""

    seconds: float
    cores: int
    ours: float | None
    """This process (all threads)."""
    others: float | None
    """Everything else on the same cores."""
    steal: float | None
    """Time the hypervisor gave our cores to other virtual machines."""
    kernel_share: float | None = None
    """Of this process's CPU time, the share the kernel spent on its behalf (system time): page faults,
    system calls."""
    minor_faults: int | None = None
    """Page faults this process took that needed no disk (a page mapped and zeroed, or shared in)."""

    @property
    def measured(self) -> bool:
        return self.ours is not None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "cores": self.cores,
            "ours": self.ours,
            "others": self.others,
            "steal": self.steal,
            "kernel_share": self.kernel_share,
            "minor_faults": self.minor_faults,
        }


def core_count(cores: list[int] | None) -> int:
    """How many cores ``cores`` names; every core of the machine where the OS cannot tell (None)."""
    return len(cores) if cores else (os.cpu_count() or 1)


Counters = Callable[[], tuple[float, float, float]]
"""Cumulative CPU seconds: (busy time of the watched cores, their steal time, this process's CPU time)."""

Usage = Callable[[], tuple[float, float, int]]
"""This process's cumulative (user seconds, system seconds, minor page faults)."""


def process_usage() -> tuple[float, float, int]:
    """:data:`Usage` from ``getrusage`` (every thread of the process)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def proc_counters(cores: list[int] | None) -> Counters:
    """Counters read from the kernel (psutil) for ``cores`` (None: every core)."""
    process = psutil.Process(os.getpid())

    def read() -> tuple[float, float, float]:
        per_cpu = psutil.cpu_times(percpu=True)
        chosen = [per_cpu[i] for i in cores if i < len(per_cpu)] if cores else per_cpu
        busy = sum(t.user + t.nice + t.system + t.irq + t.softirq for t in chosen)
        steal = sum(getattr(t, "steal", 0.0) for t in chosen)
        own = process.cpu_times()
        return busy, steal, own.user + own.system

    return read


class CpuLoadMeter:
    """``meter = CpuLoadMeter(cores); ...; load = meter.read()`` measures the window in between."""

    def __init__(
        self,
        cores: list[int] | None = None,
        clock: Clock = monotonic,
        counters: Counters | None = None,
        usage: Usage | None = None,
    ) -> None:
        self.cores = cores
        self.clock = clock
        self.counters = counters or proc_counters(cores)
        self.usage = usage or process_usage
        self.restart()

    def restart(self) -> None:
        self._start = self.clock()
        self._busy, self._steal, self._own = self.counters()
        self._usage = self.usage()

    def read(self) -> CpuLoad:
        seconds = self.clock() - self._start
        cores = core_count(self.cores)
        if seconds < MIN_WINDOW_S:
            return CpuLoad(seconds=seconds, cores=cores, ours=None, others=None, steal=None)
        busy, steal, own = self.counters()

        def share(cpu_seconds: float) -> float:
            return min(float(cores), max(0.0, cpu_seconds / seconds))

        ours = share(own - self._own)
        # the watched cores are the process's affinity, so it and the others share at most all of them
        others = min(share((busy - self._busy) - (own - self._own)), cores - ours)
        user, system, faults = (now - then for now, then in zip(self.usage(), self._usage, strict=True))
        kernel = system / (user + system) if user + system > 0 else None
        return CpuLoad(
            seconds,
            cores,
            ours,
            others,
            share(steal - self._steal),
            kernel_share=kernel,
            minor_faults=int(faults),
        )
