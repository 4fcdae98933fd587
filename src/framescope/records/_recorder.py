"""The recorder: one object owns a run directory, every file name in it, and what is written there.

A run opens a :class:`RunRecorder` and hands it, in order: the resolved config, the machine and what the
run knows before its first step (:meth:`start`: ``config.yaml``, ``system.json``, a ``summary.json`` marked
``running``, the CSV's header); each step's measurements (:meth:`record`, which makes the typed row and puts
it on disk before the next step starts); and the end (:meth:`summarize` then :meth:`write_summary`). A killed
run leaves the ``running`` summary and its rows, and :func:`~framescope.records.load_run` summarises them with
the same function as a finished run. Launch, sweep and multi-model directories are written through recorders
too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from framescope.errors import OutputError
from framescope.records._result import read_rows
from framescope.records._schema import COLUMNS, Row, metrics_filename
from framescope.records._summary import RUNNING, STATIC_KEYS, build_summary
from framescope.records._writer import CONFIG_FILE, SUMMARY_FILE, SYSTEM_FILE, RunWriter
from framescope.stages import Stage

if TYPE_CHECKING:  # reading run directories (reports, comparisons) must not load torch
    from framescope.pipeline import StepTiming

TRACE_FILE = "torch_trace.json"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def make_row(timing: StepTiming, batch_size: int) -> Row:
    """The CSV row of a step: its stage samples (seconds) in milliseconds, what the batch held, and for a live
    input its latency (from when its frames were due to when its results were ready) and drops."""
    frames = timing.frames
    row = Row(
        step=timing.step,
        total_step_latency_ms=timing.total_s * 1000.0,
        loss=timing.loss,
        batch_size=batch_size,
        frames=frames.count,
        fps=frames.count / timing.total_s if timing.total_s > 0 else None,
        warmup=int(timing.warmup),
        profiled=int(timing.profiled),
        cpu_time_ms=timing.cpu_time_s * 1000.0,
        step_start_s=timing.step_start_s,
        torch_threads=timing.torch_threads,
        first_frame=frames.first_index,
        first_pts_s=frames.first_pts_s,
        last_pts_s=frames.last_pts_s,
        sources=frames.sources,
    )
    for stage, seconds in timing.samples.items():
        setattr(row, _STAGE_COLUMN[stage], _ms(seconds))
    if timing.ready_s is not None and frames.oldest_due_s is not None and frames.newest_due_s is not None:
        row.latency_ms = (timing.ready_s - frames.oldest_due_s) * 1000.0
        row.latency_min_ms = (timing.ready_s - frames.newest_due_s) * 1000.0
    if timing.live is not None:
        row.dropped_frames, row.reconnects = timing.live.dropped, timing.live.reconnects
    return row


_STAGE_COLUMN = {stage.value: stage.column for stage in Stage}


class RunRecorder:
    """Owns one run directory (see the module docstring). Use as a context manager; it closes the CSV."""

    def __init__(self, writer: RunWriter, batch_size: int) -> None:
        self.writer = writer
        self.batch_size = batch_size
        self.context: dict[str, Any] = {}

    @classmethod
    def create(
        cls, output_dir: Path, run_name: str | None, model_name: str, *, batch_size: int
    ) -> RunRecorder:
        """A new run directory under ``output_dir``: ``run_name``, or ``{model}_{date-time}_P{pid}`` (made
        unique with a suffix when two quick runs share it)."""
        pid = os.getpid()
        name = run_name or f"{model_name}_{time.strftime('%Y%m%d-%H%M%S')}_P{pid}"
        writer = RunWriter.create(
            output_dir, name, metrics_filename(model_name, pid), unique=run_name is None
        )
        return cls(writer, batch_size)

    @property
    def run_dir(self) -> Path:
        return self.writer.run_dir

    @property
    def csv_path(self) -> Path:
        return self.writer.csv_path

    def start(self, *, config: dict[str, Any], system: dict[str, Any], context: dict[str, Any]) -> None:
        """Write ``config.yaml``, ``system.json``, a ``running`` summary holding ``context`` (what the run
        knows before its first step) and the CSV's header. Nothing measured yet: if any of it cannot be
        written (a full disk), the run directory is removed and the error says so."""
        self.context = {key: context[key] for key in STATIC_KEYS if key in context}
        try:
            self.writer.write_text(CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
            self.writer.write_json(SYSTEM_FILE, system)
            self.writer.write_json(SUMMARY_FILE, {**self.context, "status": RUNNING})
            self.writer.open_rows()
        except OutputError as exc:
            raise self.writer.abandon(exc) from None

    def record(self, timing: StepTiming) -> Row:
        """Make the step's row and put it on disk; returns the row. Rows are not kept in memory: a live run
        can go on for days, and the CSV is the record."""
        row = make_row(timing, self.batch_size)
        self.writer.write_row(row.as_dict())
        return row

    @property
    def rows_written(self) -> int:
        return self.writer.rows_written

    def frame(self) -> pd.DataFrame:
        """The rows so far, read back from the CSV (what a killed run's summary is made from, too)."""
        if not self.writer.rows_written:
            return pd.DataFrame(columns=list(COLUMNS))
        return read_rows(self.csv_path)

    def summarize(
        self, rows: pd.DataFrame, *, status: str, error: str | None, facts: dict[str, Any]
    ) -> dict[str, Any]:
        """The summary of ``rows`` (:meth:`frame`: the rows recorded), with what the run measured at its
        end."""
        return build_summary(
            rows,
            self.context,
            status=status,
            error=error,
            facts=facts,
        )

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` (raises :class:`~framescope.errors.OutputError` when it cannot)."""
        self.writer.write_json(SUMMARY_FILE, summary)

    @property
    def failed(self) -> bool:
        """Whether a row could not be written (a full disk): the rows before it are on disk, whole."""
        return self.writer.failed

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
