"""CPU binding and the thread budget.

On a small machine, more busy threads than cores is the most common way to get numbers that mean nothing:
OpenMP workers spin while another thread holds the core, and a model can run many times slower. framescope
binds the cores it is given and sizes torch's intra-op pool to them; whether threads then actually waited for
a CPU is measured (:mod:`framescope.instrument.sampler`) and reported only when they did.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from framescope._cv2 import import_cv2
from framescope.errors import DeviceError
from framescope.instrument.cpu_load import core_count


@dataclass(slots=True)
class ThreadPlan:
    cores: list[int] | None
    """The cores the process runs on after binding (None where the OS cannot tell)."""
    bound: bool
    """Whether ``--core-bind`` changed the affinity."""
    torch_threads: int
    decode_threads: int
    bind_ignored: bool = False
    """``--core-bind`` was given where the OS cannot bind (not Linux): the process runs unbound."""
    previous: tuple[list[int] | None, int, int] | None = field(default=None, repr=False)
    """(affinity, torch threads, OpenCV threads) before :func:`configure_threads`, to restore after."""

    @property
    def core_count(self) -> int:
        return core_count(self.cores)


def _core_text(cores: list[int]) -> str:
    if not cores:
        return "none"
    runs, start, prev = [], cores[0], cores[0]
    for core in [*cores[1:], None]:
        if core is not None and core == prev + 1:
            prev = core
            continue
        runs.append(f"{start}-{prev}" if prev > start else f"{start}")
        if core is not None:
            start = prev = core
    return ",".join(runs)


def set_process_affinity(cores: Iterable[int]) -> None:
    """Bind every thread of this process to ``cores``. ``sched_setaffinity(0, ...)`` binds only the calling
    thread (and the threads it starts later), so threads that already exist, such as torch's OpenMP workers
    from an earlier run in the same Python process, would go on running anywhere."""
    cores = set(cores)
    os.sched_setaffinity(0, cores)  # the calling thread first: an error here is the caller's to handle
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), cores)


def bind_cores(cores: tuple[int, ...] | None) -> tuple[list[int] | None, bool, bool]:
    """Bind the process to ``cores`` (None: leave the affinity alone). Returns (cores, bound, ignored):
    ``ignored`` when cores were asked for where the OS cannot bind."""
    can_bind = hasattr(os, "sched_setaffinity") and sys.platform.startswith("linux")
    current = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cores is None:
        return current, False, False
    if not can_bind:
        return current, False, True
    total = os.cpu_count() or 0
    missing = [c for c in cores if c >= total]
    if missing:
        raise DeviceError(
            f"--core-bind asks for core(s) {_core_text(missing)}, which do not exist: this machine has cores "
            f"0-{total - 1}; pass cores within that range or 'all'."
        )
    try:
        set_process_affinity(cores)
    except OSError:
        allowed = _core_text(current or [])
        raise DeviceError(
            f"--core-bind {_core_text(list(cores))}: the OS refused (this process may only use cores "
            f"{allowed}, e.g. inside a container); pass cores from that set."
        ) from None
    return sorted(os.sched_getaffinity(0)), True, False


def plan_threads(
    cores: list[int] | None, *, torch_threads: int | None, decode_threads: int, pipeline: str = "sync"
) -> tuple[int, int]:
    """Torch and decode thread counts for ``cores`` before anything was measured.

    In the synchronous pipeline decoding and the model take turns, so each may use every bound core. In the
    async pipeline they run at once: the producer thread decodes (one FFmpeg thread unless asked for more)
    and preprocesses single-threaded, and the model starts with every core; which plan is faster is then
    measured (:class:`ThreadTrial`), because it depends on the model, the input and the machine. Whether a
    plan oversubscribes the cores is measured too, as the time threads wait for a CPU
    (:mod:`framescope.instrument.sampler`), not guessed from thread counts.
    """
    available = core_count(cores)
    if pipeline == "async":
        return torch_threads or available, decode_threads or 1
    return torch_threads or available, decode_threads or available


def configure_threads(
    cores: tuple[int, ...] | None, *, torch_threads: int | None, decode_threads: int, pipeline: str = "sync"
) -> ThreadPlan:
    """Bind, then size torch's and OpenCV's thread pools to the bound cores."""
    cv2 = import_cv2()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    previous = (affinity, torch.get_num_threads(), cv2.getNumThreads())
    bound_cores, bound, ignored = bind_cores(cores)
    torch_n, decode_n = plan_threads(
        bound_cores, torch_threads=torch_threads, decode_threads=decode_threads, pipeline=pipeline
    )
    torch.set_num_threads(torch_n)
    cv2.setNumThreads(decode_n)
    return ThreadPlan(bound_cores, bound, torch_n, decode_n, ignored, previous)


def restore_threads(plan: ThreadPlan) -> None:
    """Undo :func:`configure_threads`, so a run started from Python leaves its caller as it found it."""
    if plan.previous is None:
        return
    affinity, torch_n, cv2_n = plan.previous
    if plan.bound and affinity is not None:
        set_process_affinity(affinity)
    torch.set_num_threads(torch_n)
    import_cv2().setNumThreads(cv2_n)
