"""Spans: every pipeline stage runs inside one, which emits an NVTX range, a torch.profiler
``record_function`` and a timing sample.

Timing semantics (also in the README):

* ``host-wall``: host wall time around the stage. Used on CPU, where it is the stage's time.
* ``cuda-sync``: the device is synchronised before and after the stage, so the host wall time equals the
  device time of the work the stage queued. Simple and exact, but it serialises host and device.

Spans nest: a stage's sample is its exclusive time (a ``split`` transfer inside ``exec`` counts as ``split``,
not twice), so the stages of a step still add up to the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from framescope.instrument.clock import Clock, monotonic

HOST_WALL = "host-wall"
CUDA_SYNC = "cuda-sync"


_NVTX_PREFIX = [""]
"""Put before every NVTX range name: a launched worker's name, so one timeline separates the workers."""


def set_nvtx_prefix(prefix: str) -> None:
    """Name every NVTX range this process opens from now on ``PREFIX + name`` (``framescope launch`` sets
    ``WORKER/`` in each worker)."""
    _NVTX_PREFIX[0] = prefix


def _nvtx_functions() -> tuple[Callable[[str], object], Callable[[], object]]:
    """NVTX push/pop, or no-ops where this torch build has no NVTX (CPU-only builds)."""
    try:
        range_push, pop = torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
        range_push("framescope.probe")
        pop()

        def push(msg: str) -> object:
            return range_push(_NVTX_PREFIX[0] + msg)

    except (AttributeError, RuntimeError):

        def push(msg: str) -> object:
            return 0

        def pop() -> object:
            return 0

    return push, pop


nvtx_push, nvtx_pop = _nvtx_functions()
"""Open and close an NVTX range by name (no-ops where torch has no NVTX): for other timers' spans."""


@contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX range (visible in Nsight Systems); harmless without a GPU or profiler attached."""
    nvtx_push(name)
    try:
        yield
    finally:
        nvtx_pop()


class _Span:
    """One timed stage. A class rather than a generator: it sits on the hot path of every step."""

    __slots__ = ("_children", "_cpu_start", "_function", "_start", "name", "timer")

    def __init__(self, timer: StageTimer, name: str) -> None:
        self.timer = timer
        self.name = name
        self._function: torch.profiler.record_function | None = None
        self._start = 0.0
        self._cpu_start = 0.0
        self._children = 0.0

    def __enter__(self) -> None:
        nvtx_push(self.name)
        # record_function costs ~10 us even with no profiler listening; only pay it while one records.
        if torch.autograd._profiler_enabled():
            self._function = torch.profiler.record_function(self.name)
            self._function.__enter__()
        timer = self.timer
        if timer.sync is not None:
            timer.sync()
        timer._open.append(self)
        if timer.cpu_clock is not None:
            self._cpu_start = timer.cpu_clock()
        self._start = timer.clock()

    def __exit__(self, *exc: object) -> None:
        timer = self.timer
        try:
            if timer.sync is not None:
                timer.sync()
            elapsed = timer.clock() - self._start
            if timer.cpu_clock is not None and not timer._open[:-1]:  # outermost spans only: no double count
                timer.cpu_totals[self.name] = (
                    timer.cpu_totals.get(self.name, 0.0) + timer.cpu_clock() - self._cpu_start
                )
                timer.wall_totals[self.name] = timer.wall_totals.get(self.name, 0.0) + elapsed
            timer._open.pop()
            if timer._open:
                timer._open[-1]._children += elapsed
            timer.samples[self.name] = timer.samples.get(self.name, 0.0) + elapsed - self._children
        finally:
            if self._function is not None:
                self._function.__exit__(None, None, None)
                self._function = None
            nvtx_pop()


class StageTimer:
    """Times the named stages of one step at a time.

    ``sync`` is called before and after each stage when stage times must be device times (``cuda-sync``);
    leave it ``None`` on CPU. Durations are in seconds; a stage entered twice in a step accumulates.
    """

    def __init__(
        self,
        clock: Clock = monotonic,
        sync: Callable[[], None] | None = None,
        cpu_clock: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.sync = sync
        self.method = CUDA_SYNC if sync is not None else HOST_WALL
        self.samples: dict[str, float] = {}
        self._open: list[_Span] = []
        self.cpu_clock = cpu_clock
        """With a process CPU clock (``time.process_time``), outermost spans also total the process's CPU time
        and their wall time per stage, over the whole run: how many cores were busy during each stage."""
        self.cpu_totals: dict[str, float] = {}
        self.wall_totals: dict[str, float] = {}

    def parallelism(self) -> dict[str, float]:
        """Per stage: process CPU seconds per wall second while it ran (needs ``cpu_clock``)."""
        return {name: self.cpu_totals[name] / wall for name, wall in self.wall_totals.items() if wall > 0}

    def reset(self) -> None:
        """Forget the previous step's samples."""
        self.samples = {}

    def span(self, name: str) -> _Span:
        """``with timer.span("prep"):`` times the block as stage ``prep``."""
        return _Span(self, name)
