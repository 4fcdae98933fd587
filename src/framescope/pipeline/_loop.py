"""The synchronous loop: each stage of a step runs in turn, as in the seed's worker."""

from __future__ import annotations

from typing import Any

import torch

from framescope.instrument import nvtx_range
from framescope.pipeline._batcher import read_batch
from framescope.pipeline._stages import StepPlan, run_stages
from framescope.pipeline._step import FramesInfo, LiveCounter, LoopSettings, StepTiming
from framescope.sources import Source
from framescope.stages import Stage


def loss_value(loss: Any) -> float | None:
    """A step's loss as a number (a 0-d tensor on the host, or already a float)."""
    return None if loss is None else float(loss)


def run_sync(source: Source, plan: StepPlan, loop: LoopSettings) -> int:
    """Run steps until the input ends or ``loop.max_steps`` is reached; each finished step goes to
    ``loop.on_step`` before the next starts. Returns the number of steps run."""
    timer, clock, batch_size = loop.timer, loop.clock, loop.batch_size
    step = 0
    first_start: float | None = None
    live = LiveCounter(source)
    while (loop.max_steps is None or step < loop.max_steps) and not loop.stopping(step):
        timer.reset()
        cpu_start = loop.cpu_clock()
        start = clock()
        with nvtx_range(f"step {step}"):
            with timer.span(Stage.READ):
                read = read_batch(source, batch_size, batcher=loop.batcher)
            if read is None:
                break
            frames, batch = read
            _, loss = run_stages(plan.stages, batch, lambda stage: timer.span(stage.name))
        end = clock()
        if first_start is None:
            first_start = start
        loop.on_step(
            StepTiming(
                step=step,
                samples=dict(timer.samples),
                frames=FramesInfo.of(frames),
                total_s=end - start,
                warmup=step < loop.warmup_steps,
                profiled=loop.profiler.traced(step),
                cpu_time_s=loop.cpu_clock() - cpu_start,
                step_start_s=start - first_start,
                ready_s=end,
                live=live.take(),
                torch_threads=torch.get_num_threads(),
                loss=loss_value(loss),  # sync: the step's device work is done (its spans synchronised)
            )
        )
        loop.profiler.step()
        step += 1
        if len(frames) < batch_size and not source.info.live:
            break  # a short batch from a finite input is its last
    return step
