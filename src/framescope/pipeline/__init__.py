"""The pipeline: batching, thread budget and the loop that runs every stage inside a span."""

from framescope.pipeline._batcher import collate, read_frames, to_device
from framescope.pipeline._loop import Row, StepPlan, Transfer, run_sync
from framescope.pipeline._threads import (
    ThreadPlan,
    bind_cores,
    configure_threads,
    plan_threads,
    restore_threads,
)

__all__ = [
    "Row",
    "StepPlan",
    "ThreadPlan",
    "Transfer",
    "bind_cores",
    "collate",
    "configure_threads",
    "plan_threads",
    "read_frames",
    "restore_threads",
    "run_sync",
    "to_device",
]
