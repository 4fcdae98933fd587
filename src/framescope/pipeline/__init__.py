"""The pipeline: batching, thread budget and the loop that runs every stage inside a span."""

from framescope.pipeline._async import Producer, run_async
from framescope.pipeline._batcher import collate, read_frames
from framescope.pipeline._loop import Row, build_row, run_sync
from framescope.pipeline._stages import MODEL_STAGE, Stage, StepPlan, copy_stage, move, plan_stages
from framescope.pipeline._threads import (
    ThreadPlan,
    bind_cores,
    busy_elsewhere_warnings,
    configure_threads,
    plan_threads,
    rebalance_async,
    restore_threads,
)

__all__ = [
    "MODEL_STAGE",
    "Producer",
    "Row",
    "Stage",
    "StepPlan",
    "ThreadPlan",
    "bind_cores",
    "build_row",
    "busy_elsewhere_warnings",
    "collate",
    "configure_threads",
    "copy_stage",
    "move",
    "plan_stages",
    "plan_threads",
    "read_frames",
    "rebalance_async",
    "restore_threads",
    "run_async",
    "run_sync",
]
