"""A sweep's results: one row per point from its runs' summaries (medians over rounds), and the verdicts
over the rows (the best point, the best under a latency budget, the knee of throughput against p99)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from framescope import stats
from framescope.experiment import Trial
from framescope.stages import Stage
from framescope.sweep._points import Point, value_text

STATUSES = ("ok", "unstable", "oom", "failed")
MEASURED = ("ok", "unstable")
"""Statuses whose point has a rate and latencies."""
STAGE_ORDER = tuple(stage.column for stage in Stage)
FIXED_BEFORE = ("point",)
FIXED_AFTER = (
    "status",
    "rounds",
    "stable_rounds",
    "steady_fps",
    "step_p50_ms",
    "step_p99_ms",
    "frame_p50_ms",
    "frame_p99_ms",
)
MEMORY_COLUMNS = ("host_peak_mb", "device_peak_mb")
TRAILING = ("error", "run_dir", "run_dirs")
KNEE_METHOD = (
    "Kneedle on the Pareto front of throughput (steady FPS) against p99 step latency: both scaled to [0, 1], "
    "the knee is the front's point furthest above the line from its lowest-latency point to its fastest"
)


def setting_text(name: str, value: Any) -> int | str:
    """A swept value in sweep.csv and sweep.json: a number as itself, ``on``/``off`` for a switch, ``auto``
    (threads) or ``native`` (decode size) for the run's default, else the text the flag takes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return value_text(value, name)


def _median(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return stats.median(present) if present else None


def _stage_value(summary: dict[str, Any], column: str, key: str) -> float | None:
    value = (summary.get("stages") or {}).get(column, {}).get(key)
    return float(value) if value is not None else None


def point_row(
    point: Point, trials: list[Trial], *, sweep_dir: Path, skipped: str | None = None
) -> dict[str, Any]:
    """The sweep.csv row of ``point`` from its trials (``skipped``: why it was not run)."""
    row: dict[str, Any] = {"point": point.name}
    row.update({name: setting_text(name, value) for name, value in point.overrides.items()})
    done = [t for t in trials if t.status == "complete" and t.result is not None]
    broken = next((t for t in trials if t.status in ("oom", "failed")), None)
    error: str | None = None
    if skipped is not None:
        status, error = "oom", skipped
    elif broken is not None:
        status, error = broken.status, broken.error
    elif done and all(t.stable for t in done) and all(t.fps for t in done):
        status, error = "ok", None
    else:
        status, error = "unstable", None
    summaries = [t.result.summary for t in done if t.result is not None]
    row.update(
        status=status,
        rounds=len(trials),
        stable_rounds=sum(t.stable for t in done),
        steady_fps=_median([t.fps for t in done]),
        step_p50_ms=_median([_stage_value(s, "total_step_latency_ms", "p50_ms") for s in summaries]),
        step_p99_ms=_median([_stage_value(s, "total_step_latency_ms", "p99_ms") for s in summaries]),
        frame_p50_ms=_median([(s.get("live") or {}).get("latency_p50_ms") for s in summaries]),
        frame_p99_ms=_median([(s.get("live") or {}).get("latency_p99_ms") for s in summaries]),
    )
    for column in STAGE_ORDER:
        means = [_stage_value(s, column, "mean_ms") for s in summaries]
        if any(m is not None for m in means):
            row[column] = _median(means)
    for key in MEMORY_COLUMNS:
        peaks = [p for s in summaries if (p := (s.get("memory") or {}).get(key)) is not None]
        row[key] = max(peaks) if peaks else None
    dirs = [t.run_dir for t in trials if t.run_dir is not None]
    ranked = sorted(done, key=lambda t: t.fps or 0.0)
    middle = ranked[(len(ranked) - 1) // 2].run_dir if ranked else (dirs[-1] if dirs else None)
    row.update(
        error=error,
        run_dir=_relative(middle, sweep_dir),
        run_dirs=";".join(_relative(d, sweep_dir) or "" for d in dirs),
    )
    return row


def _relative(path: Path | None, sweep_dir: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        return str(path)


def columns(rows: list[dict[str, Any]], swept: Sequence[str]) -> list[str]:
    """sweep.csv's header: the point, the swept settings, the fixed columns, every stage some point has (in
    the pipeline's order), memory, the error and the run directories."""
    stages = [c for c in STAGE_ORDER if any(c in row for row in rows)]
    return [*FIXED_BEFORE, *swept, *FIXED_AFTER, *stages, *MEMORY_COLUMNS, *TRAILING]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def csv_text(rows: list[dict[str, Any]], swept: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = columns(rows, swept)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in header])
    return out.getvalue()


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in ("point", "steady_fps", "step_p99_ms", "status")}


def verdicts(rows: list[dict[str, Any]], budget_ms: float | None) -> dict[str, Any]:
    """The best point for throughput, the best whose p99 step latency is within ``budget_ms`` (or why there
    is none), the Pareto front of throughput against p99 step latency and its knee (:data:`KNEE_METHOD`)."""
    measured = [
        r
        for r in rows
        if r["status"] in MEASURED and r.get("steady_fps") and r.get("step_p99_ms") is not None
    ]
    result: dict[str, Any] = {
        "best": None,
        "best_under_budget": None,
        "budget_note": None,
        "pareto_front": [],
        "knee": None,
        "knee_method": KNEE_METHOD,
        "knee_note": None,
    }
    if not measured:
        result["budget_note"] = result["knee_note"] = "no point was measured"
        return result
    best = max(measured, key=lambda r: r["steady_fps"])
    result["best"] = _brief(best)
    if budget_ms is None:
        result["budget_note"] = "no --p99-budget-ms was given"
    else:
        within = [r for r in measured if r["step_p99_ms"] <= budget_ms]
        if within:
            result["best_under_budget"] = _brief(max(within, key=lambda r: r["steady_fps"]))
        else:
            lowest = min(measured, key=lambda r: r["step_p99_ms"])
            result["budget_note"] = (
                f"no point's p99 step latency is within {budget_ms:g} ms; the lowest is "
                f"{lowest['step_p99_ms']:.1f} ms ({lowest['point']}): raise the budget or sweep "
                "smaller batch sizes"
            )
    fps = [r["steady_fps"] for r in measured]
    p99 = [r["step_p99_ms"] for r in measured]
    front = [measured[i] for i in stats.pareto_front(fps, p99)]
    result["pareto_front"] = [r["point"] for r in front]
    if len(front) == 1:
        result["knee"] = _brief(front[0])
        result["knee_note"] = (
            f"{front[0]['point']} is both the fastest point and the one with the lowest p99 step "
            "latency: the front is that one point"
        )
    else:
        index = stats.knee([r["step_p99_ms"] for r in front], [r["steady_fps"] for r in front])
        if index is None:
            result["knee_note"] = (
                f"the Pareto front has {len(front)} points; a knee needs at least three"
                if len(front) < 3
                else f"the Pareto front's {len(front)} points do not bend above a straight line"
            )
        else:
            result["knee"] = _brief(front[index])
    return result
