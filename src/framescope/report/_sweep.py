"""The HTML report's view of a sweep directory: throughput against batch size (a line per combination of the
other swept settings), throughput against p99 step latency (the Pareto front, best, knee and budget marked),
per-stage time per point (stacked), and the points with their statuses.

Reads the sweep directory only (``sweep.json``, which holds every row of ``sweep.csv`` and the verdicts the
sweep computed with :mod:`framescope.stats`); nothing here computes a statistic.
"""

from __future__ import annotations

from html import escape
from typing import Any

import plotly.graph_objects as go

from framescope.report._sections import chart, table
from framescope.report._style import RUN_COLORS, STAGE_COLORS, STAGE_ORDER, figure_with

STATUS_BADGE = {"ok": "complete", "unstable": "warning", "oom": "failed", "failed": "failed"}
MEASURED = ("ok", "unstable")


def _measured(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p["status"] in MEASURED and p.get("steady_fps") is not None]


def _rest_label(point: dict[str, Any], others: list[str]) -> str:
    return ", ".join(f"{name} {point.get(name)}" for name in others) or "all points"


def fps_by_batch(report: dict[str, Any]) -> go.Figure | None:
    """Steady FPS against batch size, a line per combination of the other swept settings."""
    axes = list(report["axes"])
    if "batch_size" not in axes:
        return None
    others = [name for name in axes if name != "batch_size"]
    lines: dict[str, list[dict[str, Any]]] = {}
    for point in _measured(report["points"]):
        lines.setdefault(_rest_label(point, others), []).append(point)
    if not lines:
        return None
    figure = figure_with("Throughput against batch size", 420)
    for index, (label, members) in enumerate(lines.items()):
        points = sorted(members, key=lambda p: int(p["batch_size"]))
        figure.add_trace(
            go.Scatter(
                x=[int(p["batch_size"]) for p in points],
                y=[p["steady_fps"] for p in points],
                mode="lines+markers",
                name=label,
                line={"color": RUN_COLORS[index % len(RUN_COLORS)], "width": 2},
                customdata=[[p["point"], p["status"]] for p in points],
                hovertemplate="%{customdata[0]}<br>%{y:.1f} FPS (%{customdata[1]})<extra></extra>",
            )
        )
    figure.update_xaxes(title_text="batch size", type="log", dtick=0.30103, tickformat="d")
    figure.update_yaxes(title_text="steady FPS")
    return figure


def fps_by_p99(report: dict[str, Any]) -> go.Figure | None:
    """Every measured point at (p99 step latency, steady FPS); the Pareto front joined; best, knee and the
    best within the budget named; the budget a vertical line."""
    points = [p for p in _measured(report["points"]) if p.get("step_p99_ms") is not None]
    if not points:
        return None
    front_names = report.get("pareto_front") or []
    by_name = {p["point"]: p for p in points}
    front = [by_name[name] for name in front_names if name in by_name]
    figure = figure_with("Throughput against p99 step latency", 460)
    figure.add_trace(
        go.Scatter(
            x=[p["step_p99_ms"] for p in points],
            y=[p["steady_fps"] for p in points],
            mode="markers",
            name="points",
            marker={"size": 9, "color": RUN_COLORS[1], "line": {"width": 1, "color": "white"}},
            text=[p["point"] for p in points],
            hovertemplate="%{text}<br>p99 %{x:.1f} ms, %{y:.1f} FPS<extra></extra>",
        )
    )
    if front:
        figure.add_trace(
            go.Scatter(
                x=[p["step_p99_ms"] for p in front],
                y=[p["steady_fps"] for p in front],
                mode="lines+markers",
                name="Pareto front",
                line={"color": RUN_COLORS[0], "width": 2, "shape": "hv"},
                marker={"size": 11, "color": RUN_COLORS[0]},
                text=[p["point"] for p in front],
                hovertemplate="%{text}<br>p99 %{x:.1f} ms, %{y:.1f} FPS<extra></extra>",
            )
        )
    marks: dict[str, list[str]] = {}
    for key, label in (("best", "best"), ("knee", "knee"), ("best_under_budget", "best within budget")):
        brief = report.get(key)
        if brief and brief["point"] in by_name:
            marks.setdefault(brief["point"], []).append(label)
    for name, labels in marks.items():
        point = by_name[name]
        figure.add_annotation(
            x=point["step_p99_ms"],
            y=point["steady_fps"],
            text=" / ".join(labels),
            hovertext=escape(name),
            showarrow=True,
            arrowhead=2,
            ax=0,
            ay=-34 if "knee" not in labels or len(marks) == 1 else 34,
            font={"size": 12},
            bgcolor="rgba(255,255,255,0.85)",
        )
    budget = report.get("p99_budget_ms")
    if budget is not None:
        figure.add_vline(
            x=budget,
            line={"color": "#a40e26", "dash": "dash", "width": 1.5},
            annotation_text=f"p99 budget {budget:g} ms",
            annotation_position="top right",
        )
    figure.update_xaxes(title_text="p99 step latency (ms)", rangemode="tozero")
    figure.update_yaxes(title_text="steady FPS")
    return figure


def stages_by_point(report: dict[str, Any]) -> go.Figure | None:
    """Each stage's mean time per step (median over rounds), stacked, per measured point in sweep order."""
    points = _measured(report["points"])
    stages = [c for c in STAGE_ORDER if any(p.get(c) is not None for p in points)]
    if not points or not stages:
        return None
    axes = list(report["axes"])
    labels = [" · ".join(str(p.get(name)) for name in axes) for p in points]
    figure = figure_with("Time per step by stage, per point", 440, barmode="stack")
    for column in stages:
        figure.add_trace(
            go.Bar(
                x=labels,
                y=[p.get(column) for p in points],
                name=column.removesuffix("_latency_ms").removesuffix("_ms"),
                marker={"color": STAGE_COLORS.get(column)},
                hovertemplate="%{x}: %{y:.2f} ms<extra>" + column + "</extra>",
            )
        )
    figure.update_xaxes(title_text=" · ".join(axes), type="category")
    figure.update_yaxes(title_text="mean ms per step")
    return figure


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _points_table(report: dict[str, Any]) -> str:
    axes = list(report["axes"])
    front = set(report.get("pareto_front") or [])
    header = ["point", *axes, "status", "rounds (stable)", "FPS", "p50 ms", "p99 ms", "frame p99 ms",
              "host MB", "device MB", "note"]  # fmt: skip
    rows = []
    for point in report["points"]:
        status = point["status"]
        badge = f'<span class="badge {STATUS_BADGE.get(status, "")}">{escape(status)}</span>'
        cells = [
            escape(point["point"]) + (" ★" if point["point"] in front else ""),
            *(escape(str(point.get(name, ""))) for name in axes),
            badge,
            f"{point['rounds']} ({point['stable_rounds']})",
            _number(point.get("steady_fps")),
            _number(point.get("step_p50_ms")),
            _number(point.get("step_p99_ms")),
            _number(point.get("frame_p99_ms")),
            _number(point.get("host_peak_mb"), 0),
            _number(point.get("device_peak_mb"), 0),
            escape(point.get("error") or ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<p class="muted">★ on the Pareto front of steady FPS against p99 step latency. Rounds: runs '
        "measured (of them, stable). Numbers are medians over the point's rounds; memory is the peak.</p>"
    )


def _verdict(label: str, brief: dict[str, Any] | None, note: str | None) -> list[str]:
    if brief is None:
        return [label, f"none ({note})" if note else "none"]
    return [label, f"{brief['point']}: {brief['steady_fps']:.1f} FPS, p99 step {brief['step_p99_ms']:.1f} ms"]


def sweep_section(report: dict[str, Any], prefix: str) -> str:
    """One sweep: what was swept, the verdicts, the three charts and the points table."""
    stop = report.get("stop") or {}
    budget = report.get("p99_budget_ms")
    facts = [
        ["sweep directory", str(report.get("sweep_dir", ""))],
        ["model, input", f"{report.get('model')}, {report.get('input')}"],
        ["swept", "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in report["axes"].items())],
        ["search, rounds", f"{report.get('search')}, {report.get('rounds')} interleaved round(s)"],
        [
            "stop rule",
            f"{stop.get('windows')} windows of {stop.get('window')} steps within "
            f"{100 * float(stop.get('tolerance') or 0):.0f} %, at least {stop.get('min_steps')} steps, "
            f"at most {stop.get('max_seconds')} s per run",
        ],
        _verdict("best throughput", report.get("best"), None),
        _verdict(
            f"best within p99 {budget:g} ms" if budget is not None else "best within a p99 budget",
            report.get("best_under_budget"),
            report.get("budget_note"),
        ),
        _verdict("knee", report.get("knee"), report.get("knee_note")),
    ]
    interrupted = (
        '<p class="notice">This sweep was interrupted: the points not run are missing.</p>'
        if report.get("interrupted")
        else ""
    )
    notes = "".join(f"<li>{escape(note)}</li>" for note in report.get("notes") or [])
    charts = [
        chart(fps_by_batch(report), f"{prefix}-fps-batch", "Median steady FPS over each point's rounds."),
        chart(
            fps_by_p99(report),
            f"{prefix}-fps-p99",
            f"The knee: {report.get('knee_method', '')}.",
        ),
        chart(
            stages_by_point(report),
            f"{prefix}-stages",
            "Each stage's mean time per step (median over rounds); overlapping stages (async) can sum past "
            "the step.",
            wide=True,
        ),
    ]
    title = f"Sweep: {report.get('model')} over {', '.join(report['axes'])}"
    return (
        f"<section><h2>{escape(title)}</h2>"
        f"{interrupted}{table(facts)}"
        f'<div class="grid">{"".join(charts)}</div>'
        f"<h3>Points</h3>{_points_table(report)}"
        + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )
