"""Charts of stage times: the per-stage breakdown, the per-step timeline, the distributions, and the
side-by-side comparison of several runs. Each takes a run's summary and rows and returns a plotly figure, or
None when there is nothing to draw; anything derived from the rows comes from :mod:`framescope.stats`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from framescope import stats
from framescope.report._facts import TOTAL, stage_label
from framescope.report._style import (
    INK,
    MUTED,
    RUN_COLORS,
    STAGE_COLORS,
    STAGE_ORDER,
    as_list,
    figure_with,
    scale_y,
    shade_steps,
    stage_columns,
    step_kinds,
    summary_stage_columns,
)
from framescope.stages import Side, Stage

# --- one run ------------------------------------------------------------------------------------------------


def stage_breakdown(summary: dict[str, Any]) -> go.Figure | None:
    """Stacked per-stage mean and p99 (summary.json ``stages``), the step's wall time marked across each bar.
    In the async pipeline the producer's stages and the model's side are stacked separately: they run at
    once."""
    stages = summary.get("stages") or {}
    columns = summary_stage_columns(summary)
    if not columns:
        return None
    sides = ("producer", "model") if summary.get("pipeline") == "async" else ("",)
    statistics = {"mean": "mean_ms", "p99": "p99_ms"}
    categories = [f"{name}<br>{side}" if side else name for name in statistics for side in sides]
    figure = figure_with(
        "Per-stage latency per step: mean and p99",
        440,
        barmode="stack",
        yaxis_title="time per step (ms)",
        xaxis={"categoryorder": "array", "categoryarray": categories},
        legend_traceorder="normal",
    )
    for column in columns:
        stage = Stage.from_column(column)
        side = (
            ("producer" if stage is not None and stage.side is Side.PRODUCER else "model") if sides[0] else ""
        )
        figure.add_bar(
            x=[f"{name}<br>{side}" if side else name for name in statistics],
            y=[stages[column][key] for key in statistics.values()],
            name=stage_label(column),
            marker_color=STAGE_COLORS.get(column),
            hovertemplate=f"{stage_label(column)}: %{{y:.2f}} ms<extra></extra>",
        )
    total = stages.get(TOTAL)
    if total:
        # a line across each statistic's bars (both sides in async): category i spans i +- 0.35 (bargap 0.3)
        for index, key in enumerate(statistics.values()):
            first, last = index * len(sides), (index + 1) * len(sides) - 1
            figure.add_shape(
                type="line",
                xref="x",
                yref="y",
                x0=first - 0.42,
                x1=last + 0.42,
                y0=total[key],
                y1=total[key],
                line={"color": INK, "width": 3},
                name="step wall time",
                showlegend=index == 0,
            )
        figure.add_scatter(  # hover for the lines
            x=categories,
            y=[total[key] for key in statistics.values() for _ in sides],
            mode="markers",
            marker={"opacity": 0, "size": 12},
            showlegend=False,
            hovertemplate="step wall time: %{y:.2f} ms<extra></extra>",
        )
    return figure


def timeline(rows: pd.DataFrame, summary: dict[str, Any]) -> go.Figure | None:
    """Every step's stage times over the run, steps left out of the summary shaded."""
    if rows.empty:
        return None
    figure = figure_with(
        "Stage times per step over the run",
        460,
        xaxis_title="step",
        yaxis_title="time (ms)",
        hovermode="x unified",
        legend_traceorder="normal",
    )
    steps = [int(s) for s in rows["step"]]
    for column in stage_columns(rows, with_total=True):
        figure.add_scatter(
            x=steps,
            y=as_list(rows[column]),
            mode="lines",
            name=stage_label(column),
            line={"color": STAGE_COLORS.get(column), "width": 2.4 if column == TOTAL else 1.6},
            hovertemplate=f"{stage_label(column)}: %{{y:.2f}} ms<extra></extra>",
        )
    kinds = step_kinds(rows, summary)
    shade_steps(figure, {k: [(a - 0.5, b + 0.5) for a, b in r] for k, r in kinds.items()})
    return figure


def distributions(steady: pd.DataFrame, summary: dict[str, Any]) -> go.Figure | None:
    """Each stage's steady-state per-step times as a box (quartiles and whiskers from
    :func:`framescope.stats.box_stats`), with the summary's p99 marked."""
    columns = stage_columns(steady, with_total=True)
    boxes = {c: stats.box_stats(steady[c].dropna().astype(float).tolist()) for c in columns}
    if not boxes:
        return None
    smallest = min(b.low for b in boxes.values())
    largest = max(b.high for b in boxes.values())
    figure = figure_with(
        "Per-step latency distribution per stage (steady state)",
        440,
        yaxis_title="time per step (ms)",
        showlegend=True,
    )
    scale_y(figure, smallest, largest)
    stages = summary.get("stages") or {}
    labels = [stage_label(c) for c in columns]
    for column, label in zip(columns, labels, strict=True):
        box = boxes[column]
        color = STAGE_COLORS.get(column)
        figure.add_box(
            x=[label],
            q1=[box.q1],
            median=[box.median],
            q3=[box.q3],
            lowerfence=[box.low],
            upperfence=[box.high],
            name=label,
            marker_color=color,
            line_color=color,
            fillcolor=color,
            opacity=0.75,
            showlegend=False,
            hoverinfo="y",
        )
        if box.outliers:
            figure.add_scatter(
                x=[label] * len(box.outliers),
                y=list(box.outliers),
                mode="markers",
                marker={"color": color, "size": 5, "symbol": "circle-open"},
                showlegend=False,
                hovertemplate=f"{label} outlier: %{{y:.2f}} ms<extra></extra>",
            )
    p99 = [(label, stages[c]["p99_ms"]) for c, label in zip(columns, labels, strict=True) if c in stages]
    if p99:
        figure.add_scatter(
            x=[label for label, _ in p99],
            y=[value for _, value in p99],
            mode="markers",
            name="p99 (summary)",
            marker={"symbol": "diamond-tall", "size": 10, "color": INK},
            hovertemplate="p99: %{y:.2f} ms<extra></extra>",
        )
    figure.add_scatter(  # a legend entry for the boxes themselves
        x=[None],
        y=[None],
        mode="markers",
        name="box: quartiles, whiskers 1.5 IQR; ○ outliers",
        marker={
            "symbol": "square",
            "size": 10,
            "color": "rgba(0,0,0,0)",
            "line": {"color": MUTED, "width": 1},
        },
        hoverinfo="skip",
    )
    return figure


# --- several runs -------------------------------------------------------------------------------------------


def compare_stages(summaries: Sequence[dict[str, Any]], labels: Sequence[str]) -> go.Figure | None:
    """Each stage's steady-state mean per run, side by side (hover: p50 and p99)."""
    present = {c for s in summaries for c in (s.get("stages") or {})}
    columns = [c for c in (*STAGE_ORDER, TOTAL) if c in present]
    if not columns:
        return None
    figure = figure_with(
        "Per-stage mean latency per run (steady state)",
        440,
        barmode="group",
        yaxis_title="mean time per step (ms)",
        xaxis_title="stage",
    )
    means = [s["mean_ms"] for summary in summaries for s in (summary.get("stages") or {}).values()]
    if means:
        scale_y(figure, min(means), max(means))
    for index, (summary, label) in enumerate(zip(summaries, labels, strict=True)):
        stages = summary.get("stages") or {}
        figure.add_bar(
            x=[stage_label(c) for c in columns],
            y=[stages.get(c, {}).get("mean_ms") for c in columns],
            customdata=[[stages.get(c, {}).get("p50_ms"), stages.get(c, {}).get("p99_ms")] for c in columns],
            name=label,
            marker_color=RUN_COLORS[index % len(RUN_COLORS)],
            hovertemplate=f"{label}<br>%{{x}}: mean %{{y:.2f}} ms, p50 %{{customdata[0]:.2f}}, "
            "p99 %{customdata[1]:.2f}<extra></extra>",
        )
    return figure
