"""What the loops hand over for each step, and the settings they share.

The pipeline measures; it does not format rows or write files. For every step it hands a :class:`StepTiming`
(stage samples in seconds, what the batch held, when it was ready) to ``LoopSettings.on_step``, and the run's
recorder (:mod:`framescope.records`) turns it into the CSV row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from framescope.instrument import Clock, ProfilerWindow, StageTimer
from framescope.pipeline._many import Batcher
from framescope.sources import Frame, ManySources, Source


@dataclass(frozen=True, slots=True)
class FramesInfo:
    """What a batch held, without holding its images."""

    count: int
    first_index: int
    first_pts_s: float | None
    last_pts_s: float | None
    oldest_due_s: float | None = None
    """Live inputs: when the batch's oldest frame was due (its scheduled arrival), on the run's clock."""
    newest_due_s: float | None = None
    sources: int = 1
    """Distinct sources the batch's frames came from."""
    dues_by_source: dict[int, tuple[float, ...]] | None = None
    """Each source's frames' due times (arrival times where not live): per-source latency and counts."""

    @classmethod
    def of(cls, frames: list[Frame]) -> FramesInfo:
        dues = [f.due_s for f in frames if f.due_s is not None]
        by_source: dict[int, list[float]] = {}
        for frame in frames:
            by_source.setdefault(frame.source, []).append(
                frame.arrival_s if frame.due_s is None else frame.due_s
            )
        return cls(
            sources=len(by_source),
            dues_by_source={s: tuple(d) for s, d in by_source.items()},
            count=len(frames),
            first_index=frames[0].index,
            first_pts_s=frames[0].pts_s,
            last_pts_s=frames[-1].pts_s,
            oldest_due_s=min(dues) if dues else None,
            newest_due_s=max(dues) if dues else None,
        )


@dataclass(frozen=True, slots=True)
class LiveCounts:
    """Drops and reconnects of a live source since the previous batch."""

    dropped: int
    reconnects: int
    dropped_by_source: tuple[int, ...] | None = None
    """Several sources: each one's drops since the previous batch."""


class LiveCounter:
    """Turns a source's running totals into per-batch counts (None for inputs that are not live)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._dropped = 0
        self._reconnects = 0
        self._by_source: list[int] | None = None

    def take(self) -> LiveCounts | None:
        if not self.source.info.live:
            return None
        dropped, reconnects = self.source.dropped, self.source.reconnects
        by_source = None
        if isinstance(self.source, ManySources):
            now = self.source.dropped_by_source()
            before = self._by_source or [0] * len(now)
            by_source = tuple(n - b for n, b in zip(now, before, strict=True))
            self._by_source = now
        counts = LiveCounts(dropped - self._dropped, reconnects - self._reconnects, by_source)
        self._dropped, self._reconnects = dropped, reconnects
        return counts


@dataclass(slots=True)
class StepTiming:
    """One step as the loop measured it."""

    step: int
    samples: dict[str, float]
    """Seconds per stage (keyed by :class:`~framescope.stages.Stage` values), exclusive of nested stages."""
    frames: FramesInfo
    total_s: float
    """Wall time of the step (in the async pipeline, of the model's side)."""
    warmup: bool
    profiled: bool
    cpu_time_s: float
    """The whole process's CPU time during the step."""
    step_start_s: float
    """When the step started, seconds after the first step started."""
    ready_s: float | None = None
    """When its results were ready, on the run's clock (a live frame's latency runs from its due time to
    here)."""
    live: LiveCounts | None = None
    torch_threads: int | None = None
    loss: float | None = None


@dataclass(kw_only=True)
class LoopSettings:
    """What both loops (and the async producer) need, passed once."""

    batch_size: int
    max_steps: int | None
    warmup_steps: int
    timer: StageTimer
    """The calling thread's stage timer (the model's side in the async pipeline)."""
    clock: Clock
    profiler: ProfilerWindow
    on_step: Callable[[StepTiming], None]
    """Called with each step, in step order, once its measurements are final."""
    batcher: Batcher | None = None
    """Several sources: how frames from them form batches (one source: None)."""
    cpu_clock: Callable[[], float] = time.process_time
    should_stop: Callable[[], bool] | None = None
    """Asked before each step after the first: True ends the run there, as the end of the input would (an
    experiment stops a run once its rate is stable)."""

    def stopping(self, step: int) -> bool:
        return step > 0 and self.should_stop is not None and self.should_stop()
