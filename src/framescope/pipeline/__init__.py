"""The pipeline: batching, the thread budget and the loops that run every stage inside a span."""

from framescope.pipeline._async import Producer, run_async
from framescope.pipeline._batcher import collate, read_frames
from framescope.pipeline._loop import run_sync
from framescope.pipeline._many import Arrivals, Batcher, round_robin
from framescope.pipeline._stages import PlannedStage, StepPlan, copy_stage, move, plan_stages
from framescope.pipeline._step import FramesInfo, LiveCounts, LoopSettings, StepTiming
from framescope.pipeline._threads import (
    ThreadPlan,
    bind_cores,
    configure_threads,
    plan_threads,
    restore_threads,
)
from framescope.pipeline._timers import Timers
from framescope.pipeline._trial import (
    MIN_ROUNDS,
    STEPS_PER_WINDOW,
    ThreadTrial,
    trial_candidates,
    trial_rounds,
)

__all__ = [
    "MIN_ROUNDS",
    "STEPS_PER_WINDOW",
    "Arrivals",
    "Batcher",
    "FramesInfo",
    "LiveCounts",
    "LoopSettings",
    "PlannedStage",
    "Producer",
    "StepPlan",
    "StepTiming",
    "ThreadPlan",
    "ThreadTrial",
    "Timers",
    "bind_cores",
    "collate",
    "configure_threads",
    "copy_stage",
    "move",
    "plan_stages",
    "plan_threads",
    "read_frames",
    "restore_threads",
    "round_robin",
    "run_async",
    "run_sync",
    "trial_candidates",
    "trial_rounds",
]
