"""The report's look: one colour per stage in every chart, one plotly template, and the pieces every chart
shares (axes that switch to a log scale, shaded steps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from framescope.report._facts import TOTAL
from framescope.stages import Stage

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
INK = "#1f2328"
MUTED = "#57606a"
GRID = "#e4e7eb"

STAGE_COLORS: dict[str, str] = {
    Stage.READ.column: "#0072B2",
    Stage.DECODE.column: "#56B4E9",
    Stage.H2D.column: "#009E73",
    Stage.PREP.column: "#E69F00",
    Stage.D2H.column: "#CC79A7",
    Stage.EXEC.column: "#D55E00",
    Stage.POST.column: "#8C564B",
    Stage.SPLIT.column: "#7B3294",
    Stage.QUEUE_WAIT.column: "#A3A3A3",
    TOTAL: INK,
}
"""One colour per stage in every chart (Okabe-Ito's colour-blind-safe set first)."""
STAGE_ORDER: tuple[str, ...] = tuple(stage.column for stage in Stage)
RUN_COLORS = ("#1B3A5C", "#5B8DC9", "#A9C4E4", "#6E6E6E", "#B5B5B5", "#3D6E5A", "#8FBFA8")
"""Runs in a comparison: shades that do not claim a stage's colour."""
SHADES = {
    "warm-up steps": "rgba(120, 120, 120, 0.16)",
    "thread-plan trial steps": "rgba(86, 180, 233, 0.20)",
    "profiled steps": "rgba(230, 159, 0, 0.20)",
}

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font={"family": FONT, "size": 13, "color": INK},
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=list(RUN_COLORS),
        title={"x": 0, "xanchor": "left", "y": 0.985, "yanchor": "top", "font": {"size": 16}},
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.0,
            "xanchor": "left",
            "x": 0,
            "font": {"size": 12},
            "bgcolor": "rgba(255,255,255,0)",
        },
        margin={"l": 72, "r": 24, "t": 80, "b": 56},
        xaxis={
            "showgrid": False,
            "zeroline": False,
            "linecolor": "#8c959f",
            "ticks": "outside",
            "automargin": True,
        },
        yaxis={
            "gridcolor": GRID,
            "zeroline": False,
            "linecolor": "#8c959f",
            "ticks": "outside",
            "automargin": True,
            "rangemode": "tozero",
        },
        hoverlabel={"font": {"family": FONT}},
        bargap=0.3,
    )
)


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks from below ``low`` to above ``high``."""
    ticks: list[float] = []
    decade = 10.0 ** math.floor(math.log10(low))
    while not ticks or ticks[-1] < high:
        ticks.extend(decade * m for m in (1, 2, 5))
        decade *= 10
    return [v for v in ticks if low / 2.5 <= v <= high * 2.5]


def scale_y(figure: go.Figure, smallest: float, largest: float) -> None:
    """A log y axis, with plain 1-2-5 ticks, where the values span more than 30x (a 0.1 ms post-processing
    stage beside a 100 ms model); linear otherwise. The axis title says which."""
    if not (smallest > 0 and largest / smallest > 30):
        return
    ticks = _log_ticks(smallest, largest)
    title = figure.layout.yaxis.title.text or ""
    figure.update_yaxes(
        type="log",
        rangemode="normal",
        tickvals=ticks,
        ticktext=[f"{v:g}" for v in ticks],
        title_text=title[:-1] + ", log scale)" if title.endswith(")") else f"{title} (log scale)",
    )


def figure_with(title: str, height: int, **layout: Any) -> go.Figure:
    """An empty figure in the report's template, with its title, height and any other layout."""
    figure = go.Figure(layout={"template": TEMPLATE, "title": {"text": title}, "height": height})
    figure.update_layout(**layout)
    return figure


def as_list(series: pd.Series) -> list[float | None]:
    """A column as a JSON-plain list (plotly would write NumPy arrays as base64), gaps as None."""
    return [None if pd.isna(v) else float(v) for v in series]


def stage_columns(rows: pd.DataFrame, *, with_total: bool = False) -> list[str]:
    """The stage columns a run measured, in pipeline order."""
    wanted = (*STAGE_ORDER, TOTAL) if with_total else STAGE_ORDER
    return [c for c in wanted if c in rows and rows[c].notna().any()]


def summary_stage_columns(summary: dict[str, Any]) -> list[str]:
    stages = summary.get("stages") or {}
    return [c for c in STAGE_ORDER if c in stages]


def _flag_ranges(steps: Sequence[int], flags: Sequence[bool]) -> list[tuple[int, int]]:
    """Consecutive flagged steps as (first, last) ranges."""
    ranges: list[tuple[int, int]] = []
    for step, flagged in zip(steps, flags, strict=True):
        if not flagged:
            continue
        if ranges and ranges[-1][1] == step - 1:
            ranges[-1] = (ranges[-1][0], step)
        else:
            ranges.append((step, step))
    return ranges


def step_kinds(rows: pd.DataFrame, summary: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """Step ranges left out of the steady state: warm-up, the async thread-plan trial (marked warm-up in the
    rows; summary ``threads.trial`` says which), and torch.profiler's window."""
    steps = [int(s) for s in rows["step"]]
    warm = (rows["warmup"].fillna(0) > 0).tolist()
    trial = (summary.get("threads") or {}).get("trial") or {}
    first, count = trial.get("first_step"), trial.get("steps")
    in_trial = [
        bool(w and first is not None and count and first <= s < first + count)
        for s, w in zip(steps, warm, strict=True)
    ]
    profiled = ((rows["profiled"].fillna(0) > 0) & (rows["warmup"].fillna(0) == 0)).tolist()
    return {
        "warm-up steps": _flag_ranges(steps, [w and not t for w, t in zip(warm, in_trial, strict=True)]),
        "thread-plan trial steps": _flag_ranges(steps, in_trial),
        "profiled steps": _flag_ranges(steps, profiled),
    }


def shade_steps(figure: go.Figure, kinds: dict[str, list[tuple[float, float]]]) -> None:
    for kind, ranges in kinds.items():
        for index, (x0, x1) in enumerate(ranges):
            figure.add_shape(
                type="rect",
                xref="x",
                yref="paper",
                x0=x0,
                x1=x1,
                y0=0,
                y1=1,
                fillcolor=SHADES[kind],
                line_width=0,
                layer="below",
                name=kind,
                legendgroup=kind,
                showlegend=index == 0,
            )
