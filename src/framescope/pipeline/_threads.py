"""CPU binding and the thread budget.

On a small machine, more busy threads than cores is the most common way to get numbers that mean nothing:
OpenMP workers spin while another thread holds the core, and a model can run many times slower. framescope
binds the cores it is given, sizes torch's intra-op pool to them, and says so when the configuration or the
machine oversubscribes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch

from framescope._cv2 import import_cv2
from framescope.errors import DeviceError
from framescope.instrument.cpu_load import core_count
from framescope.instrument.spans import StageTimer


@dataclass(slots=True)
class ThreadPlan:
    cores: list[int] | None
    """The cores the process runs on after binding (None where the OS cannot tell)."""
    bound: bool
    """Whether ``--core-bind`` changed the affinity."""
    torch_threads: int
    decode_threads: int
    warnings: list[str] = field(default_factory=list)
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


def bind_cores(cores: tuple[int, ...] | None) -> tuple[list[int] | None, bool, list[str]]:
    """Bind the process to ``cores`` (None: leave the affinity alone). Returns (cores, bound, warnings)."""
    warnings: list[str] = []
    can_bind = hasattr(os, "sched_setaffinity") and sys.platform.startswith("linux")
    current = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cores is None:
        return current, False, warnings
    if not can_bind:
        warnings.append("--core-bind works on Linux only; the process was not bound.")
        return current, False, warnings
    total = os.cpu_count() or 0
    missing = [c for c in cores if c >= total]
    if missing:
        raise DeviceError(
            f"--core-bind asks for core(s) {_core_text(missing)}, which do not exist: this machine has cores "
            f"0-{total - 1}; pass cores within that range or 'all'."
        )
    try:
        os.sched_setaffinity(0, cores)
    except OSError:
        allowed = _core_text(current or [])
        raise DeviceError(
            f"--core-bind {_core_text(list(cores))}: the OS refused (this process may only use cores "
            f"{allowed}, e.g. inside a container); pass cores from that set."
        ) from None
    return sorted(os.sched_getaffinity(0)), True, warnings


def plan_threads(
    cores: list[int] | None, *, torch_threads: int | None, decode_threads: int, pipeline: str = "sync"
) -> tuple[int, int, list[str]]:
    """Pick torch and decode thread counts for ``cores``, with warnings where they oversubscribe.

    In the synchronous pipeline decoding and the model take turns, so each may use every bound core. In the
    async pipeline they run at once: the producer thread decodes (one FFmpeg thread) and preprocesses
    (single-threaded), and the model gets the other cores, so that decode threads plus torch threads do not
    exceed the bound cores unless the user asks for more, which is then reported. (Load from other processes
    is measured during the run, see :mod:`framescope.instrument.cpu_load`.)
    """
    warnings: list[str] = []
    available = core_count(cores)
    if pipeline == "async":
        decode_n = decode_threads or 1
        torch_n = torch_threads or max(1, available - decode_n)
        if torch_n + decode_n > available:
            warnings.append(
                f"{torch_n} torch threads and {decode_n} decode thread(s) run at once on {available} core(s) "
                "in the async pipeline and oversubscribe the CPU: threads will wait for each other and stage "
                "times will inflate; lower --torch-threads or --decode-threads, or bind more cores."
            )
        return torch_n, decode_n, warnings
    torch_n = torch_threads or available
    decode_n = decode_threads or available
    if torch_n > available:
        warnings.append(
            f"{torch_n} torch threads on {available} core(s) oversubscribe the CPU: threads will wait for "
            "each other and stage times will inflate; drop --torch-threads or bind more cores."
        )
    if decode_n > available:
        warnings.append(
            f"{decode_n} decode threads on {available} core(s) oversubscribe the CPU; lower --decode-threads."
        )
    return torch_n, decode_n, warnings


def configure_threads(
    cores: tuple[int, ...] | None, *, torch_threads: int | None, decode_threads: int, pipeline: str = "sync"
) -> ThreadPlan:
    """Bind, then size torch's and OpenCV's thread pools to the bound cores."""
    cv2 = import_cv2()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    previous = (affinity, torch.get_num_threads(), cv2.getNumThreads())
    bound_cores, bound, warnings = bind_cores(cores)
    torch_n, decode_n, more = plan_threads(
        bound_cores, torch_threads=torch_threads, decode_threads=decode_threads, pipeline=pipeline
    )
    torch.set_num_threads(torch_n)
    cv2.setNumThreads(decode_n)
    return ThreadPlan(bound_cores, bound, torch_n, decode_n, warnings + more, previous)


def restore_threads(plan: ThreadPlan) -> None:
    """Undo :func:`configure_threads`, so a run started from Python leaves its caller as it found it."""
    if plan.previous is None:
        return
    affinity, torch_n, cv2_n = plan.previous
    if plan.bound and affinity is not None:
        os.sched_setaffinity(0, affinity)
    torch.set_num_threads(torch_n)
    import_cv2().setNumThreads(cv2_n)


PRODUCER_IDLE_ENOUGH = 0.3
"""The most work per batch the producer may have, relative to the model's, for the model to get every core."""


def rebalance_async(cores: int, torch_threads: int, producer_s: float, model_s: float) -> tuple[int, str]:
    """After the warm-up steps of an async run: whether the model can have every core.

    The budget starts strict (one core for the producer). An OpenMP team that shares a core with a thread
    that is busy all the time slows down severalfold, but a producer that is idle most of the time costs the
    model little: measured on 2 cores, resnet50 on a 1080p clip ran at 9.5 FPS with one torch thread and
    17.6 FPS with two (the model's own rate on synthetic input: 17.7). So the model gets every core when the
    producer's work per batch (one thread) is at most 30% of the model's per-batch time at full width
    (estimated from its time on ``torch_threads`` threads). Returns (torch threads, the reason, for the run's
    record)."""
    if torch_threads >= cores:
        return torch_threads, "the model already has every core"
    model_full_s = model_s * torch_threads / cores
    ratio = producer_s / model_full_s if model_full_s > 0 else float("inf")
    if ratio <= PRODUCER_IDLE_ENOUGH:
        return cores, (
            f"async: the producer needed {1000 * producer_s:.0f} ms per batch against the model's "
            f"~{1000 * model_full_s:.0f} ms on {cores} threads ({100 * ratio:.0f}%), so after warm-up the "
            f"model got all {cores} cores; the producer's short bursts share them"
        )
    return torch_threads, (
        f"async: the producer needed {1000 * producer_s:.0f} ms per batch against the model's "
        f"~{1000 * model_full_s:.0f} ms on {cores} threads ({100 * ratio:.0f}%), so it keeps its own core "
        f"and the model {torch_threads} thread(s)"
    )


def busy_elsewhere_warnings(timer: StageTimer, threads: ThreadPlan) -> list[str]:
    """Stages during which the process used clearly more cores than the stage's own threads can: other
    threads were burning CPU meanwhile, typically torch's OpenMP workers spinning after the model."""
    expected = {"read": threads.decode_threads, "h2d": 1, "d2h": 1}
    run_wall = sum(timer.wall_totals.values())
    warnings = []
    for stage, value in timer.parallelism().items():
        allowed = expected.get(stage, threads.torch_threads)
        if value > allowed + 0.5 and timer.wall_totals[stage] >= 0.05 * run_wall:
            warnings.append(
                f"during {stage} the process kept {value:.1f} cores busy though the stage runs on at most "
                f"{allowed} thread(s): other threads were burning CPU meanwhile (typically torch's OpenMP "
                "workers spinning after the model), which slows the stage; fewer --torch-threads may help."
            )
    return warnings
