"""How long this process's threads waited for a CPU, read from the kernel's scheduler statistics.

More threads wanting to run than there are cores costs exactly one thing: threads wait in the run queue
instead of running. Linux counts that wait per thread (``/proc/self/task/TID/schedstat``: nanoseconds on a
CPU, nanoseconds runnable but waiting, time slices), so it can be measured rather than guessed from how many
threads a plan starts. Counting runnable threads is not the same thing: an OpenMP worker that spins for a few
milliseconds after a parallel region is runnable and costs nothing when a core is free, and a sampler counts
itself. A daemon thread reads every thread's counters a few times a second (threads that end between two
readings keep their last one) and leaves itself out.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

INTERVAL_S = 0.5
NATIVE = "native threads (OpenMP, OpenCV, ...)"
"""Threads the process's libraries started without a name of their own."""


@dataclass(slots=True)
class ThreadTimes:
    name: str
    run_s: float
    """Seconds on a CPU."""
    wait_s: float
    """Seconds runnable but waiting for a CPU."""
    delay_s: float = 0.0
    """Waiting weighted by work: per thread, CPU seconds x the share of its ready time it waited."""


def read_schedstat(pid: int | None = None) -> dict[int, tuple[str, float, float]] | None:
    """{thread id: (name, seconds on a CPU, seconds waiting for one)} for every thread of ``pid`` (this
    process); None where the kernel does not keep the statistics."""
    pid = pid or os.getpid()
    base = f"/proc/{pid}/task"
    try:
        tasks = os.listdir(base)
    except OSError:
        return None
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    readings: dict[int, tuple[str, float, float]] = {}
    for task in tasks:
        tid = int(task)
        try:
            with open(f"{base}/{task}/schedstat", "rb") as stat:
                run_ns, wait_ns = (int(v) for v in stat.read().split()[:2])
            with open(f"{base}/{task}/comm", "rb") as comm:
                own_name = comm.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        if tid == pid:
            name = "main"
        elif tid in names:
            name = names[tid]
        else:  # FFmpeg names its threads (av:h264:df0); OpenMP and OpenCV workers carry the process's name
            name = own_name if own_name != _process_name(pid) else NATIVE
        readings[tid] = (name, run_ns / 1e9, wait_ns / 1e9)
    return readings or None


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            return comm.read().decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class CpuWaitSampler:
    """``with CpuWaitSampler() as sampler:`` follows every thread's CPU and run-queue time until the block
    ends; :meth:`summary` totals them, by thread name."""

    interval_s: float = INTERVAL_S
    read: Any = read_schedstat
    _first: dict[int, tuple[str, float, float]] = field(default_factory=dict)
    _last: dict[int, tuple[str, float, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _self_id: int | None = None
    available: bool = True

    def _sample(self) -> None:
        readings = self.read()
        if readings is None:
            self.available = False
            return
        readings.pop(self._self_id, None)
        first = not self._last  # threads seen in the first reading count from there; later ones from birth
        for tid, (read_name, run_s, wait_s) in readings.items():
            known = self._last.get(tid)
            # a Python thread that is exiting has left threading's registry but keeps its name here
            name = known[0] if known is not None and known[0] != NATIVE else read_name
            self._first.setdefault(tid, (name, run_s, wait_s) if first else (name, 0.0, 0.0))
            self._last[tid] = (name, run_s, wait_s)

    def _run(self) -> None:
        self._self_id = threading.get_native_id()
        while not self._stop.wait(self.interval_s) and self.available:
            self._sample()

    def __enter__(self) -> CpuWaitSampler:
        self._sample()  # threads alive now start from their current counters; later ones from zero
        self._thread = threading.Thread(target=self._run, name="framescope-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.available:
            self._sample()

    def threads(self) -> list[ThreadTimes]:
        """Per thread name: CPU, wait and work-weighted wait seconds over the sampled window, busiest
        first. The weighting is per thread, before threads of one name are added up."""
        totals: dict[str, ThreadTimes] = {}
        for tid, (name, run_s, wait_s) in self._last.items():
            _, run0, wait0 = self._first[tid]
            ran, waited = max(0.0, run_s - run0), max(0.0, wait_s - wait0)
            entry = totals.setdefault(name, ThreadTimes(name, 0.0, 0.0))
            entry.run_s += ran
            entry.wait_s += waited
            entry.delay_s += ran * waited / (ran + waited) if ran + waited > 0 else 0.0
        return sorted(totals.values(), key=lambda t: -(t.run_s + t.wait_s))

    def summary(self) -> dict[str, Any] | None:
        """``wait_share``: the share of their ready time that the threads doing the work spent waiting for
        a CPU (each thread's share, weighted by the CPU time it used: a worker that wakes, waits and finds
        nothing left to do delays nobody); ``run_s``/``wait_s`` totals; ``by_thread`` per thread name. None
        where not measurable."""
        if not self.available or not self._last:
            return None
        threads = self.threads()
        run_s = sum(t.run_s for t in threads)
        wait_s = sum(t.wait_s for t in threads)
        return {
            "run_s": run_s,
            "wait_s": wait_s,
            "wait_share": sum(t.delay_s for t in threads) / run_s if run_s > 0 else 0.0,
            "by_thread": {
                t.name: {"run_s": t.run_s, "wait_s": t.wait_s, "delay_s": t.delay_s}
                for t in threads
                if t.run_s + t.wait_s
            },
        }
