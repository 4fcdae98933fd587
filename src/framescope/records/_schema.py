"""The metrics CSV: one typed :class:`Row` per step; the seed's six columns first, in the seed's order, then
framescope's own. The column list, the stage columns and their documentation all derive from :class:`Row`
and from :class:`~framescope.stages.Stage`, so a column cannot be misspelt without a sound."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from framescope.stages import PRODUCER_STAGES as _PRODUCER_STAGES
from framescope.stages import Stage


def _column(doc: str, default: Any = None) -> Any:
    return field(default=default, metadata={"doc": doc})


def _stage(stage: Stage) -> Any:
    return field(default=None, metadata={"doc": stage.doc, "stage": stage})


@dataclass(slots=True)
class Row:
    """One step of a run, as its CSV line. Latencies are milliseconds; None is an empty cell (the stage did
    not happen)."""

    step: int = _column("0-based batch number", 0)
    read_latency_ms: float | None = _stage(Stage.READ)
    prep_latency_ms: float | None = _stage(Stage.PREP)
    exec_latency_ms: float | None = _stage(Stage.EXEC)
    total_step_latency_ms: float = _column(
        "wall time of the whole step, first stage start to last stage end", 0.0
    )
    loss: float | None = _column("training loss (retrain mode; empty in inference)")
    decode_latency_ms: float | None = _stage(Stage.DECODE)
    h2d_latency_ms: float | None = _stage(Stage.H2D)
    d2h_latency_ms: float | None = _stage(Stage.D2H)
    post_latency_ms: float | None = _stage(Stage.POST)
    queue_wait_ms: float | None = _stage(Stage.QUEUE_WAIT)
    split_transfer_latency_ms: float | None = _stage(Stage.SPLIT)
    batch_size: int = _column("the configured batch size", 0)
    frames: int = _column("frames actually in this batch (the last batch may be short)", 0)
    fps: float | None = _column("frames / total_step_latency_ms")
    warmup: int = _column("1 for warm-up steps, which the summary leaves out", 0)
    profiled: int = _column(
        "1 for steps traced by torch.profiler (its overhead inflates them; left out of the summary)", 0
    )
    cpu_time_ms: float | None = _column("CPU time of the whole process during the step (all threads)")
    step_start_s: float = _column("when the step started, seconds after the first step started", 0.0)
    torch_threads: int | None = _column(
        "torch intra-op threads the step ran with (the async pipeline measures its thread plan in the steps "
        "after the warm-up, which are then marked warmup=1)"
    )
    first_frame: int | None = _column("index of the batch's first frame in the input")
    first_pts_s: float | None = _column("presentation timestamp of the batch's first frame (seconds)")
    last_pts_s: float | None = _column("presentation timestamp of the batch's last frame (seconds)")
    latency_ms: float | None = _column(
        "live inputs: from when the batch's oldest frame was due to when its result was ready"
    )
    latency_min_ms: float | None = _column("live inputs: the same for the batch's newest frame")
    dropped_frames: int | None = _column(
        "live inputs: frames dropped since the previous batch because the pipeline fell behind"
    )
    reconnects: int | None = _column("live inputs: reconnects since the previous batch")
    sources: int = _column("distinct sources the batch's frames came from (1 for a run with one input)", 1)

    def stage_ms(self, stage: Stage) -> float | None:
        value: float | None = getattr(self, stage.column)
        return value

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}


_FIELDS = dataclasses.fields(Row)
COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
"""Every CSV column, in order."""
SEED_COLUMNS: tuple[str, ...] = COLUMNS[:6]
"""The seed worker's columns, in its order: step, read, prep, exec and total latency, loss."""
EXTRA_COLUMNS: tuple[str, ...] = COLUMNS[6:]
COLUMN_DOCS: dict[str, str] = {f.name: f.metadata["doc"] for f in _FIELDS}

STAGE_COLUMNS: dict[str, str] = {stage.value: stage.column for stage in Stage.work()}
"""Stage name (as in NVTX ranges and traces) -> its latency column."""
WAIT_COLUMNS: dict[str, str] = {stage.value: stage.column for stage in Stage if stage.is_wait}
"""Time spent waiting rather than working: the model waiting for its input in the async pipeline."""
PRODUCER_STAGES: tuple[str, ...] = tuple(stage.value for stage in _PRODUCER_STAGES)
"""The stages an async pipeline runs ahead of the model, in its producer thread."""

assert {stage.column for stage in Stage} <= set(COLUMNS), "every stage has its column"


def metrics_filename(model_name: str, pid: int) -> str:
    """The seed's CSV name."""
    return f"M_{model_name}_P_{pid}_metrics.csv"
