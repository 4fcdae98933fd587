"""The run summary: throughput and per-stage percentiles over the steady state (warm-up and profiled steps
left out), computed from the rows alone so a killed run can be summarised after the fact."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from framescope.records._schema import PRODUCER_STAGES, STAGE_COLUMNS, WAIT_COLUMNS

RUNNING = "running"
"""The status of ``summary.json`` while a run is going (or after it was killed)."""

STATIC_KEYS = (
    "framescope_version",
    "started_at",
    "model",
    "mode",
    "pipeline",
    "batch_size",
    "timing_method",
    "source",
    "decode_size",
    "deadline_ms",
    "batching",
    "threads",
    "malloc",
    "setup",
    "setup_cpu",
)
"""What a run knows before its first step; written to summary.json (status ``running``) when it starts, so
a run killed before its end is summarised from the same context as a finished one."""

PERCENTILES = (50, 95, 99)


def stage_stats(values: pd.Series) -> dict[str, float]:
    data = values.dropna().to_numpy(dtype=float)
    if data.size == 0:
        return {}
    p50, p95, p99 = np.percentile(data, PERCENTILES)
    return {
        "mean_ms": float(data.mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "min_ms": float(data.min()),
        "max_ms": float(data.max()),
        "count": int(data.size),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def pace_stage(stage_means: dict[str, float], pipeline: str) -> str | None:
    """The stage that sets the pace. Run in turn (sync), that is the slowest stage. In the async pipeline the
    producer (reading, decoding, preprocessing, copies in) and the model's side run at once, so the slower
    side sets the pace, and within it its slowest stage."""
    if not stage_means:
        return None
    if pipeline == "async":
        producer_columns = {STAGE_COLUMNS[s] for s in PRODUCER_STAGES}
        producer = {c: v for c, v in stage_means.items() if c in producer_columns}
        consumer = {c: v for c, v in stage_means.items() if c not in producer_columns}
        if producer and consumer:
            side = producer if sum(producer.values()) > sum(consumer.values()) else consumer
            return max(side, key=lambda c: side[c])
    return max(stage_means, key=lambda c: stage_means[c])


def frame_latencies(rows: pd.DataFrame) -> np.ndarray:
    """Per-frame latencies (ms) of live rows: a batch's frames lie between its newest frame's latency and its
    oldest's, evenly (exact for a paced replay; close for a camera at a steady rate)."""
    values: list[np.ndarray] = []
    for newest, oldest, count in rows[["latency_min_ms", "latency_ms", "frames"]].itertuples(index=False):
        if pd.notna(oldest) and pd.notna(newest) and count:
            values.append(np.linspace(newest, oldest, int(count)))
    return np.concatenate(values) if values else np.empty(0)


def live_summary(
    rows: pd.DataFrame, steady: pd.DataFrame, deadline_ms: float | None
) -> dict[str, Any] | None:
    """Latency, drops, reconnects and on-time throughput of a live input; None for other inputs."""
    if "latency_ms" not in rows or rows["latency_ms"].isna().all():
        return None
    latencies = frame_latencies(steady)
    seconds = float(steady["total_step_latency_ms"].sum()) / 1000.0
    result: dict[str, Any] = {
        "frames_dropped": int(steady["dropped_frames"].fillna(0).sum()),
        "frames_dropped_all_steps": int(rows["dropped_frames"].fillna(0).sum()),
        "reconnects": int(rows["reconnects"].fillna(0).sum()),
        "deadline_ms": deadline_ms,
    }
    if latencies.size:
        p50, p90, p99 = np.percentile(latencies, (50, 90, 99))
        result.update(latency_p50_ms=float(p50), latency_p90_ms=float(p90), latency_p99_ms=float(p99))
        result["latency_max_ms"] = float(latencies.max())
        oldest = steady[["latency_ms", "total_step_latency_ms"]].dropna()
        if len(oldest):  # a batch's oldest frame: time spent waiting (buffer, queue) vs its step's own time
            waited = (oldest["latency_ms"] - oldest["total_step_latency_ms"]).clip(lower=0)
            result["queueing_p50_ms"] = float(np.median(waited))
            result["processing_p50_ms"] = float(np.median(oldest["total_step_latency_ms"]))
            result["queueing_share"] = (
                float(waited.sum() / oldest["latency_ms"].sum()) if oldest["latency_ms"].sum() > 0 else None
            )
    if deadline_ms is not None and latencies.size and seconds > 0:
        on_time = int((latencies <= deadline_ms).sum())
        result.update(
            on_time_frames=on_time, on_time_fps=on_time / seconds, late_frames=int(latencies.size - on_time)
        )
    return result


def steady_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a summary's statistics are over: warm-up (and thread-trial) and profiled steps left out,
    unless that leaves none (then all of them, and the summary says so)."""
    if rows.empty:
        return rows
    excluded = (rows["warmup"].fillna(0) > 0) | (rows["profiled"].fillna(0) > 0)
    return rows if excluded.all() else rows[~excluded]


def summarize(rows: pd.DataFrame, pipeline: str = "sync", deadline_ms: float | None = None) -> dict[str, Any]:
    """Throughput and latency statistics of a run's rows."""
    if rows.empty:
        return {"steps": 0, "frames": 0, "steady_steps": 0, "stages": {}, "note": "no steps were recorded"}
    steady = steady_rows(rows)
    note = None
    if len(steady) == len(rows) and ((rows["warmup"].fillna(0) > 0) | (rows["profiled"].fillna(0) > 0)).any():
        note = "every step was a warm-up or profiled step; statistics include them"
    stages: dict[str, dict[str, float]] = {}
    for column in [*STAGE_COLUMNS.values(), *WAIT_COLUMNS.values(), "total_step_latency_ms"]:
        if column in steady and steady[column].notna().any():
            stages[column] = stage_stats(steady[column])
    first_start = float(rows["step_start_s"].iloc[0])
    last_end = float(rows["step_start_s"].iloc[-1] + rows["total_step_latency_ms"].iloc[-1] / 1000.0)
    wall = max(last_end - first_start, 1e-12)
    frames = int(rows["frames"].sum())
    steady_frames = int(steady["frames"].sum())
    steady_time = float(steady["total_step_latency_ms"].sum()) / 1000.0
    stage_means = {c: s["mean_ms"] for c, s in stages.items() if c in STAGE_COLUMNS.values()}
    total_mean = stages.get("total_step_latency_ms", {}).get("mean_ms", float("nan"))
    summary: dict[str, Any] = {
        "steps": len(rows),
        "frames": frames,
        "wall_time_s": wall,
        "avg_fps": frames / wall,
        "steady_steps": len(steady),
        "steady_frames": steady_frames,
        "steady_fps": _finite(steady_frames / steady_time) if steady_time > 0 else None,
        "excluded_steps": {
            "warmup": int((rows["warmup"].fillna(0) > 0).sum()),
            "profiled": int(((rows["profiled"].fillna(0) > 0) & (rows["warmup"].fillna(0) == 0)).sum()),
        },
        "stages": stages,
        "stage_sum_over_total": _finite(sum(stage_means.values()) / total_mean) if stage_means else None,
        "pace_stage": pace_stage(stage_means, pipeline),
    }
    if "loss" in steady and steady["loss"].notna().any():
        losses = steady["loss"].dropna()
        summary["loss"] = {
            "first": float(losses.iloc[0]),
            "last": float(losses.iloc[-1]),
            "mean": float(losses.mean()),
        }
    live = live_summary(rows, steady, deadline_ms)
    if live is not None:
        summary["live"] = live
    if note:
        summary["note"] = note
    return summary


def build_summary(
    rows: pd.DataFrame,
    context: dict[str, Any],
    *,
    status: str,
    error: str | None = None,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's summary: ``context`` (what was known before the first step: model, source, pipeline,
    threads, ...), the status, ``facts`` measured at the end (CPU use, the trace, ...), and the statistics
    of ``rows``, computed for the run's own pipeline and deadline. The same function summarises a finished
    run and, from its directory, a killed one."""
    summary: dict[str, Any] = {key: context[key] for key in STATIC_KEYS if key in context}
    summary.update(status=status, error=error)
    summary.update(facts or {})
    summary.update(summarize(rows, str(context.get("pipeline") or "sync"), context.get("deadline_ms")))
    return summary
