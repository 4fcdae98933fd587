"""The synchronous loop: each stage of a step runs in turn, as in the seed's worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from framescope.instrument import Clock, ProfilerWindow, StageTimer, nvtx_range
from framescope.pipeline._batcher import read_batch
from framescope.pipeline._stages import StepPlan, run_stages
from framescope.records import STAGE_COLUMNS, WAIT_COLUMNS
from framescope.sources import Frame, Source

Row = dict[str, Any]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def build_row(
    *,
    step: int,
    frames: list[Frame],
    samples: dict[str, float],
    total_s: float,
    loss: Any,
    batch_size: int,
    warmup: bool,
    profiled: bool,
    cpu_time_s: float,
    step_start_s: float,
    ready_s: float | None = None,
    live: LiveCounts | None = None,
    torch_threads: int | None = None,
) -> Row:
    """One CSV row from a step's stage samples (seconds) and what it processed. For a live input, ``ready_s``
    (when the results were ready, on the run's clock) gives the batch's latency from when its frames were
    due, and ``live`` its drops and reconnects since the previous batch."""
    row: Row = {column: _ms(samples.get(stage)) for stage, column in (STAGE_COLUMNS | WAIT_COLUMNS).items()}
    row.update(
        step=step,
        total_step_latency_ms=total_s * 1000.0,
        loss=None if loss is None else float(loss),  # a deferred (device) loss is read here
        batch_size=batch_size,
        frames=len(frames),
        fps=len(frames) / total_s if total_s > 0 else None,
        warmup=int(warmup),
        profiled=int(profiled),
        cpu_time_ms=cpu_time_s * 1000.0,
        step_start_s=step_start_s,
        torch_threads=torch_threads,
        first_frame=frames[0].index,
        first_pts_s=frames[0].pts_s,
        last_pts_s=frames[-1].pts_s,
    )
    dues = [f.due_s for f in frames if f.due_s is not None]
    if dues and ready_s is not None:
        row.update(latency_ms=(ready_s - min(dues)) * 1000.0, latency_min_ms=(ready_s - max(dues)) * 1000.0)
    if live is not None:
        row.update(dropped_frames=live.dropped, reconnects=live.reconnects)
    return row


class LiveCounts:
    """Drops and reconnects of a live source since the previous batch (None-valued for other inputs)."""

    def __init__(self, dropped: int, reconnects: int) -> None:
        self.dropped, self.reconnects = dropped, reconnects


class LiveCounter:
    """Turns a source's running totals into per-batch counts."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._dropped = 0
        self._reconnects = 0

    def take(self) -> LiveCounts | None:
        if not self.source.info.live:
            return None
        dropped, reconnects = self.source.dropped, self.source.reconnects
        counts = LiveCounts(dropped - self._dropped, reconnects - self._reconnects)
        self._dropped, self._reconnects = dropped, reconnects
        return counts


def run_sync(
    source: Source,
    plan: StepPlan,
    *,
    batch_size: int,
    timer: StageTimer,
    clock: Clock,
    max_steps: int | None,
    warmup_steps: int,
    profiler: ProfilerWindow,
    on_row: Callable[[Row], None],
    cpu_clock: Callable[[], float] = time.process_time,
) -> int:
    """Run steps until the input ends or ``max_steps`` is reached; each finished step goes to ``on_row``
    before the next starts. Returns the number of steps run."""
    step = 0
    first_start: float | None = None
    source.span = timer.span
    live = LiveCounter(source)
    while max_steps is None or step < max_steps:
        timer.reset()
        cpu_start = cpu_clock()
        start = clock()
        with nvtx_range(f"step {step}"):
            with timer.span("read"):
                read = read_batch(source, batch_size)
            if read is None:
                break
            frames, batch = read
            _, loss = run_stages(plan.stages, batch, lambda stage: timer.span(stage.name))
        end = clock()
        if first_start is None:
            first_start = start
        on_row(
            build_row(
                step=step,
                frames=frames,
                samples=timer.samples,
                total_s=end - start,
                loss=loss,
                batch_size=batch_size,
                warmup=step < warmup_steps,
                profiled=profiler.traced(step),
                cpu_time_s=cpu_clock() - cpu_start,
                step_start_s=start - first_start,
                ready_s=end,
                live=live.take(),
                torch_threads=torch.get_num_threads(),
            )
        )
        profiler.step()
        step += 1
        if len(frames) < batch_size and not source.info.live:
            break  # a short batch from a finite input is its last
    return step
