"""The pipeline: batching, thread budget and the loop that runs every stage inside a span."""

from framescope.pipeline._async import Producer, run_async
from framescope.pipeline._batcher import collate, read_frames
from framescope.pipeline._loop import Row, build_row, run_sync
from framescope.pipeline._stages import MODEL_STAGE, Stage, StepPlan, copy_stage, move, plan_stages
from framescope.pipeline._threads import (
    ThreadPlan,
    bind_cores,
    configure_threads,
    cpu_wait_warnings,
    idle_core_warnings,
    plan_threads,
    restore_threads,
)
from framescope.pipeline._trial import ThreadTrial, trial_candidates, trial_fits

__all__ = [
    "MODEL_STAGE",
    "Producer",
    "Row",
    "Stage",
    "StepPlan",
    "ThreadPlan",
    "ThreadTrial",
    "bind_cores",
    "build_row",
    "collate",
    "configure_threads",
    "copy_stage",
    "cpu_wait_warnings",
    "idle_core_warnings",
    "move",
    "plan_stages",
    "plan_threads",
    "read_frames",
    "restore_threads",
    "run_async",
    "run_sync",
    "trial_candidates",
    "trial_fits",
]
