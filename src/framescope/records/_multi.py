"""The run directory of several models per frame: one seed-format CSV per model, ``frames.csv`` for the frame
as a whole, and a summary with each model's figures.

``M_{model}_P_{pid}_metrics.csv``, one per model: the seed's columns and framescope's, then ``wait_ms`` (from
when the batch was handed to the models to when this model started on it: the models before it in
``serial``) and ``work_ms`` (its own wall time, start to results). The shared stages (``read``, ``decode``)
are the same in every model's file: each file is a whole record of its model's steps.
``total_step_latency_ms`` is the step as this model saw it: reading, the hand-over, and until its results
were ready. A model's preprocessing shared with another's shows, in the model that waited for it, as the
time it waited.

``frames.csv``: per batch, reading, the hand-over (``handoff_ms``: the copy into shared memory for
processes), the time until *every* model finished (``total_step_latency_ms``) and, per model, when it finished
after the hand-over (``{model}_done_ms``). The summary's throughput, stages and percentiles are this file's.

The solo phase (each model alone on the first batches, before they all run together) is kept out of the
CSVs; its step times are in ``summary.models[*].solo_work_ms``, and ``solo_step_ms`` is their median (the
first left out as a warm-up when three or more were run).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from framescope.errors import OutputError
from framescope.records._recorder import make_row
from framescope.records._schema import COLUMNS, Row, metrics_filename
from framescope.records._summary import RUNNING, STATIC_KEYS, build_summary, stage_stats, steady_rows
from framescope.records._writer import CONFIG_FILE, SUMMARY_FILE, SYSTEM_FILE, RunWriter
from framescope.stages import Stage

if TYPE_CHECKING:
    from framescope.pipeline._multi import ModelTiming, MultiStepTiming

FRAMES_FILE = "frames.csv"
MODEL_EXTRA_COLUMNS = ("wait_ms", "work_ms")
FRAME_COLUMNS = (
    "step",
    "read_latency_ms",
    "decode_latency_ms",
    "handoff_ms",
    "total_step_latency_ms",
    "frames",
    "fps",
    "warmup",
    "profiled",
    "step_start_s",
    "first_frame",
    "first_pts_s",
)


def frame_columns(names: list[str]) -> tuple[str, ...]:
    return (*FRAME_COLUMNS, *(f"{name}_done_ms" for name in names))


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _model_row(timing: MultiStepTiming, name: str, batch_size: int) -> dict[str, Any]:
    from framescope.pipeline._step import StepTiming

    own = timing.models[name]
    step = StepTiming(
        step=timing.step,
        samples={**timing.read, **own.samples},
        frames=timing.frames,
        total_s=timing.read_s + timing.handoff_s + (own.end_s - timing.dispatch_s),
        warmup=timing.warmup,
        profiled=timing.profiled,
        cpu_time_s=0.0,
        step_start_s=timing.step_start_s,
    )
    row = make_row(step, batch_size)
    row.cpu_time_ms = None  # the process's CPU time is the models' together: not this model's
    values = row.as_dict()
    values["wait_ms"] = _ms(own.start_s - timing.dispatch_s)
    values["work_ms"] = _ms(own.work_s)
    return values


def _frame_row(timing: MultiStepTiming) -> dict[str, Any]:
    total = timing.total_s
    values: dict[str, Any] = {
        "step": timing.step,
        "read_latency_ms": _ms(timing.read[Stage.READ]) if Stage.READ in timing.read else None,
        "decode_latency_ms": _ms(timing.read[Stage.DECODE]) if Stage.DECODE in timing.read else None,
        "handoff_ms": _ms(timing.handoff_s),
        "total_step_latency_ms": _ms(total),
        "frames": timing.frames.count,
        "fps": timing.frames.count / total if total > 0 else None,
        "warmup": int(timing.warmup),
        "profiled": int(timing.profiled),
        "step_start_s": timing.step_start_s,
        "first_frame": timing.frames.first_index,
        "first_pts_s": timing.frames.first_pts_s,
    }
    for name, own in timing.models.items():
        values[f"{name}_done_ms"] = _ms(own.end_s - timing.dispatch_s)
    return values


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def solo_steady(solo_work_ms: list[float]) -> list[float]:
    """The solo steps a model's solo figure is the median of: its first is a warm-up (the first batch its
    worker ran, caches cold) and is left out when at least two remain."""
    return solo_work_ms[1:] if len(solo_work_ms) >= 3 else solo_work_ms


def model_figures(rows: pd.DataFrame, solo_work_ms: list[float]) -> dict[str, Any]:
    """One model's summary figures from its CSV rows and its solo steps."""
    steady = steady_rows(rows)
    work = steady["work_ms"].dropna().astype(float) if "work_ms" in steady else pd.Series(dtype=float)
    seconds = float(work.sum()) / 1000.0
    frames = int(steady.loc[work.index, "frames"].sum()) if len(work) else 0
    exec_stats = stage_stats(steady["exec_latency_ms"]) if "exec_latency_ms" in steady else {}
    together = float(work.median()) if len(work) else None
    solo = _median(solo_steady(solo_work_ms))
    stages = {
        column: stage_stats(steady[column])
        for column in (s.column for s in Stage.work() if s not in (Stage.READ, Stage.DECODE))
        if column in steady and steady[column].notna().any()
    }
    return {
        "steps": len(rows),
        "steady_steps": len(steady),
        "steady_fps": frames / seconds if seconds > 0 else None,
        "exec": {k: exec_stats[k] for k in ("mean_ms", "p50_ms", "p99_ms") if k in exec_stats},
        "solo_step_ms": solo,
        "together_step_ms": together,
        "interference": together / solo if together is not None and solo else None,
        "solo_work_ms": solo_work_ms,
        "wait_p50_ms": float(steady["wait_ms"].median()) if "wait_ms" in steady and len(steady) else None,
        "stages": stages,
    }


class MultiRecorder:
    """Owns the run directory of several models per frame (see the module docstring); use as a context
    manager."""

    def __init__(self, writers: dict[str, RunWriter], frames: RunWriter, batch_size: int) -> None:
        self.writers, self.frames_writer, self.batch_size = writers, frames, batch_size
        self.main = next(iter(writers.values()))
        self.context: dict[str, Any] = {}
        self.solo: dict[str, list[float]] = {name: [] for name in writers}

    @classmethod
    def create(
        cls, output_dir: Path, run_name: str | None, names: list[str], *, batch_size: int
    ) -> MultiRecorder:
        """A new run directory: ``run_name``, or ``{a+b+c}_{date-time}_P{pid}``."""
        pid = os.getpid()
        name = run_name or f"{'+'.join(names)}_{time.strftime('%Y%m%d-%H%M%S')}_P{pid}"
        main = RunWriter.create(output_dir, name, metrics_filename(names[0], pid), unique=run_name is None)
        writers = {names[0]: main}
        columns = (*COLUMNS, *MODEL_EXTRA_COLUMNS)
        main.columns = columns
        for other in names[1:]:
            writers[other] = RunWriter(main.run_dir, metrics_filename(other, pid), columns)
        frames = RunWriter(main.run_dir, FRAMES_FILE, frame_columns(names))
        return cls(writers, frames, batch_size)

    @property
    def run_dir(self) -> Path:
        return self.main.run_dir

    @property
    def csv_path(self) -> Path:
        return self.main.csv_path

    @property
    def frames_path(self) -> Path:
        return self.frames_writer.csv_path

    def csv_paths(self) -> dict[str, Path]:
        return {name: writer.csv_path for name, writer in self.writers.items()}

    def start(self, *, config: dict[str, Any], system: dict[str, Any], context: dict[str, Any]) -> None:
        """``config.yaml``, ``system.json``, the ``running`` summary and every CSV's header."""
        self.context = {key: context[key] for key in (*STATIC_KEYS, "multi_model") if key in context}
        try:
            self.main.write_text(CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
            self.main.write_json(SYSTEM_FILE, system)
            self.main.write_json(SUMMARY_FILE, {**self.context, "status": RUNNING})
            for writer in (*self.writers.values(), self.frames_writer):
                writer.open_rows()
        except OutputError as exc:
            raise self.main.abandon(exc) from None

    def record_solo(self, name: str, timing: ModelTiming) -> None:
        self.solo[name].append(_ms(timing.work_s))

    def record(self, timing: MultiStepTiming) -> Row:
        """Every model's row and the frame's, on disk before the next step; returns the frame's as a
        :class:`Row` (for observers: its total is the time until every model finished)."""
        for name in timing.models:
            self.writers[name].write_row(_model_row(timing, name, self.batch_size))
        frame = _frame_row(timing)
        self.frames_writer.write_row(frame)
        return Row(**{k: v for k, v in frame.items() if k in COLUMNS}, batch_size=self.batch_size)

    @property
    def rows_written(self) -> int:
        return self.frames_writer.rows_written

    def frame(self) -> pd.DataFrame:
        """``frames.csv`` read back, with every run column (what the summary's statistics are over)."""
        if not self.frames_writer.rows_written:
            return pd.DataFrame(columns=list(frame_columns(list(self.writers))))
        rows = pd.read_csv(self.frames_path)
        rows["batch_size"] = self.batch_size
        return rows

    def model_rows(self, name: str) -> pd.DataFrame:
        writer = self.writers[name]
        if not writer.rows_written:
            return pd.DataFrame(columns=[*COLUMNS, *MODEL_EXTRA_COLUMNS])
        return pd.read_csv(writer.csv_path)

    def summarize(
        self,
        rows: pd.DataFrame,
        *,
        status: str,
        error: str | None,
        facts: dict[str, Any],
        models: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """The frame-level summary (``steady_fps`` is the combined throughput: frames whose every model had
        finished, per second) and ``models``: each model's figures, over ``models``' static facts."""
        summary = build_summary(rows, self.context, status=status, error=error, facts=facts)
        summary["multi_model"] = self.context.get("multi_model")
        summary["pace_stage"] = None  # the models' stages are in summary.models, not in frames.csv
        per_model: dict[str, dict[str, Any]] = {}
        for name in self.writers:
            figures = model_figures(self.model_rows(name), self.solo[name])
            figures["csv"] = self.writers[name].csv_path.name
            per_model[name] = {**models.get(name, {}), **figures}
        summary["models"] = per_model
        return summary

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.main.write_json(SUMMARY_FILE, summary)

    @property
    def failed(self) -> bool:
        return any(w.failed for w in (*self.writers.values(), self.frames_writer))

    def close(self) -> None:
        for writer in (*self.writers.values(), self.frames_writer):
            writer.close()

    def __enter__(self) -> MultiRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
