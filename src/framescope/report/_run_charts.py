"""Charts of a run's context: a live input's latency, drops and reconnects; who used the CPU and how the
threads were planned; the measured what-if of tune.json."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from framescope.report._facts import TOTAL, stage_label
from framescope.report._style import (
    INK,
    MUTED,
    RUN_COLORS,
    STAGE_COLORS,
    STAGE_ORDER,
    as_list,
    figure_with,
    shade_steps,
    step_kinds,
)

DEADLINE_COLOR = "#C0392B"


def mark_deadline(figure: go.Figure, deadline_ms: float | None) -> None:
    """A live run's deadline as a dashed line across a latency chart (on a linear latency axis)."""
    if deadline_ms:
        figure.add_hline(
            y=deadline_ms,
            line={"color": DEADLINE_COLOR, "dash": "dash", "width": 1.5},
            annotation_text=f"deadline {deadline_ms:.0f} ms",
            annotation_position="top left",
            annotation_font_color=DEADLINE_COLOR,
        )


def live_latency(rows: pd.DataFrame, summary: dict[str, Any]) -> go.Figure | None:
    """A live input's latency per step (oldest and newest frame of each batch) against time, the deadline,
    dropped frames and reconnects."""
    live = summary.get("live")
    if not live or rows.empty or rows["latency_ms"].isna().all():
        return None
    figure = figure_with(
        "Live latency over time: from when a frame was due to its result",
        460,
        xaxis_title="time since the first step (s)",
        yaxis_title="latency (ms)",
        hovermode="x unified",
    )
    start = as_list(rows["step_start_s"])
    figure.add_scatter(
        x=start,
        y=as_list(rows["latency_min_ms"]),
        mode="lines",
        name="newest frame of the batch",
        line={"color": "#5B8DC9", "width": 1.4},
        hovertemplate="newest frame: %{y:.1f} ms<extra></extra>",
    )
    figure.add_scatter(
        x=start,
        y=as_list(rows["latency_ms"]),
        mode="lines",
        name="oldest frame of the batch",
        line={"color": "#1B3A5C", "width": 2},
        fill="tonexty",
        fillcolor="rgba(91, 141, 201, 0.18)",
        hovertemplate="oldest frame: %{y:.1f} ms<extra></extra>",
    )
    mark_deadline(figure, live.get("deadline_ms"))
    dropped = rows["dropped_frames"].fillna(0)
    if (dropped > 0).any():
        figure.update_layout(
            yaxis2={
                "title": "frames dropped before the step",
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "rangemode": "tozero",
                "ticks": "outside",
                "linecolor": "#8c959f",
            }
        )
        figure.add_bar(
            x=start,
            y=as_list(dropped),
            name="frames dropped",
            yaxis="y2",
            marker_color="rgba(192, 57, 43, 0.55)",
            hovertemplate="dropped: %{y:.0f}<extra></extra>",
        )
    reconnected = rows["reconnects"].fillna(0) > 0
    for index, at in enumerate(s for s, hit in zip(start, reconnected, strict=True) if hit):
        figure.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=at,
            x1=at,
            y0=0,
            y1=1,
            line={"color": "#7B3294", "width": 2, "dash": "dot"},
            name="reconnect",
            legendgroup="reconnect",
            showlegend=index == 0,
        )
    # the steps the summary leaves out, as time: from the first one's start to the last one's end
    starts: list[float] = rows["step_start_s"].astype(float).tolist()
    ends: list[float] = (rows["step_start_s"] + rows[TOTAL] / 1000.0).astype(float).tolist()
    where = {int(step): index for index, step in enumerate(rows["step"])}
    shade_steps(
        figure,
        {
            kind: [(starts[where[a]], ends[where[b]]) for a, b in ranges]
            for kind, ranges in step_kinds(rows, summary).items()
        },
    )
    return figure


def source_latency(summary: dict[str, Any]) -> go.Figure | None:
    """Several sources: each source's mean frame latency per time window (a line each) and its largest (a
    marker), from the summary's bounded timeline; the deadline a line."""
    sources = summary.get("sources") or {}
    timeline = sources.get("timeline")
    if not timeline or not timeline.get("start_s"):
        return None
    uris = {entry["source"]: entry.get("uri", "") for entry in sources.get("per_source") or []}
    window = float(timeline["window_s"])
    figure = figure_with(
        f"Latency per source over time ({window:g} s windows)",
        460,
        xaxis_title="time since the first steady result (s)",
        yaxis_title="frame latency (ms)",
    )
    starts = [t + window / 2 for t in timeline["start_s"]]
    for entry in timeline["per_source"]:
        index = entry["source"]
        color = RUN_COLORS[index % len(RUN_COLORS)]
        name = f"source {index}"
        figure.add_scatter(
            x=starts,
            y=entry["mean_ms"],
            mode="lines",
            name=name,
            legendgroup=name,
            line={"color": color, "width": 1.6},
            customdata=entry["frames"],
            hovertemplate=f"{name} ({escape(str(uris.get(index, '')))}): mean %{{y:.1f}} ms over "
            "%{customdata} frames<extra></extra>",
        )
        figure.add_scatter(
            x=starts,
            y=entry["max_ms"],
            mode="markers",
            name=f"{name} largest",
            legendgroup=name,
            showlegend=False,
            marker={"color": color, "size": 5, "symbol": "triangle-up"},
            hovertemplate=f"{name}: largest %{{y:.1f}} ms<extra></extra>",
        )
    mark_deadline(figure, sources.get("deadline_ms"))
    return figure


def cpu_use(summary: dict[str, Any]) -> go.Figure | None:
    """How busy this process, other processes and the hypervisor kept the cores, over set-up and the run."""
    phases = [
        (name, data)
        for name, data in (("set-up", summary.get("setup_cpu")), ("run", summary.get("cpu")))
        if data and data.get("ours") is not None
    ]
    if not phases:
        return None
    cores = max(int(data.get("cores") or 0) for _, data in phases)
    figure = figure_with(
        "Who kept the cores busy",
        300,
        barmode="stack",
        xaxis_title=f"cores busy (of {cores})",
        xaxis_range=[0, max(cores, 1) * 1.08],
        yaxis_autorange="reversed",
        legend_traceorder="normal",
        margin_t=84,
    )
    for key, name, color in (
        ("ours", "this process", "#1B3A5C"),
        ("others", "other processes", "#E69F00"),
        ("steal", "hypervisor steal", "#C0392B"),
    ):
        figure.add_bar(
            y=[phase for phase, _ in phases],
            x=[data.get(key) or 0.0 for _, data in phases],
            orientation="h",
            name=name,
            marker_color=color,
            texttemplate="%{x:.2f}",
            textposition="inside",
            textangle=0,
            insidetextanchor="middle",
            hovertemplate=f"{name}: %{{x:.2f}} cores<extra></extra>",
        )
    figure.add_vline(x=cores, line={"color": MUTED, "dash": "dash", "width": 1})
    return figure


def stage_cores(summary: dict[str, Any]) -> go.Figure | None:
    """Per stage: the process's CPU seconds per wall second while the stage ran (summary
    ``cpu.stage_parallelism``)."""
    cpu = summary.get("cpu") or {}
    parallelism: dict[str, float] = cpu.get("stage_parallelism") or {}
    columns = [c for c in STAGE_ORDER if c in parallelism]
    if not columns:
        return None
    cores = cpu.get("cores")
    figure = figure_with(
        "Cores busy while each stage ran",
        300,
        yaxis_title="cores (CPU s per wall s)",
        showlegend=False,
        margin_t=64,
    )
    figure.add_bar(
        x=[stage_label(c) for c in columns],
        y=[parallelism[c] for c in columns],
        marker_color=[STAGE_COLORS.get(c) for c in columns],
        hovertemplate="%{x}: %{y:.2f} cores<extra></extra>",
    )
    if cores:
        figure.add_hline(
            y=cores,
            line={"color": MUTED, "dash": "dash", "width": 1},
            annotation_text=f"{cores} cores",
            annotation_position="top left",
        )
    return figure


def thread_wait(summary: dict[str, Any]) -> go.Figure | None:
    """Per thread: seconds on a CPU and seconds ready but waiting for one (summary ``cpu.wait.by_thread``)."""
    wait = (summary.get("cpu") or {}).get("wait") or {}
    threads: dict[str, dict[str, float]] = wait.get("by_thread") or {}
    if not threads:
        return None
    names = sorted(threads, key=lambda name: -threads[name].get("run_s", 0.0))
    figure = figure_with(
        "CPU time and run-queue wait per thread",
        max(260, 120 + 42 * len(names)),
        barmode="group",
        xaxis_title="seconds over the run",
        yaxis_autorange="reversed",
        margin_t=84,
    )
    for key, name, color in (
        ("run_s", "on a CPU", "#1B3A5C"),
        ("wait_s", "ready, waiting for a CPU", "#C0392B"),
    ):
        figure.add_bar(
            y=names,
            x=[threads[n].get(key, 0.0) for n in names],
            orientation="h",
            name=name,
            marker_color=color,
            hovertemplate=f"%{{y}} {name}: %{{x:.3f}} s<extra></extra>",
        )
    return figure


def thread_trial(summary: dict[str, Any]) -> go.Figure | None:
    """The async pipeline's measured thread plan: FPS per torch thread count, the kept one solid."""
    trial = (summary.get("threads") or {}).get("trial") or {}
    candidates = [c for c in trial.get("candidates") or [] if c.get("fps") is not None]
    if not candidates:
        return None
    chosen = trial.get("chosen")
    labels = [
        f"{c['torch_threads']} torch thread{'s' if c['torch_threads'] != 1 else ''}" for c in candidates
    ]
    figure = figure_with(
        "Thread-plan trial: FPS per torch thread count",
        300,
        yaxis_title="FPS (frames/s)",
        showlegend=False,
        margin_t=64,
    )
    figure.add_bar(
        x=labels,
        y=[c["fps"] for c in candidates],
        marker_color=["#1B3A5C" if c["torch_threads"] == chosen else "#A9C4E4" for c in candidates],
        text=[f"{c['fps']:.1f}" + (" (kept)" if c["torch_threads"] == chosen else "") for c in candidates],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{x}: %{y:.1f} FPS<extra></extra>",
    )
    return figure


VERDICT_COLORS = {
    "recommended": INK,
    "faster": "#009E73",
    "slower": "#C0392B",
    "no measurable change": "#8c959f",
    "failed": "#8c959f",
}


def tune_speedups(tune: dict[str, Any]) -> go.Figure | None:
    """Each measured what-if: its speedup with the interval as error bars, against 1.0 (no change)."""
    points = []
    for trial in tune.get("trials") or []:
        speedup = trial.get("speedup") or {}
        if speedup.get("value") is not None:
            points.append((str(trial.get("finding")), speedup, str(trial.get("verdict"))))
    overall = tune.get("speedup") or {}
    if overall.get("value") is not None:
        points.append(("recommended", overall, "recommended"))
    if not points:
        return None
    figure = figure_with(
        "Measured what-if: speedup per trial, with its interval",
        max(240, 130 + 46 * len(points)),
        xaxis_title="speedup (× the unchanged command's FPS; 1 = no change)",
        yaxis={"range": [len(points) - 0.5, -0.8], "gridcolor": "rgba(0,0,0,0)"},
        showlegend=False,
        margin_t=64,
    )
    figure.add_vline(x=1.0, line={"color": MUTED, "dash": "dash", "width": 1.2})
    figure.add_scatter(
        y=[label for label, _, _ in points],
        x=[float(s["value"]) for _, s, _ in points],
        mode="markers+text",
        text=[f"×{float(s['value']):.2f}  {v}" for _, s, v in points],
        textposition="top center",
        textfont={"size": 12, "color": MUTED},
        cliponaxis=False,
        marker={"size": 13, "color": [VERDICT_COLORS.get(v, INK) for _, _, v in points]},
        error_x={
            "type": "data",
            "symmetric": False,
            "array": [float(s.get("high", s["value"])) - float(s["value"]) for _, s, _ in points],
            "arrayminus": [float(s["value"]) - float(s.get("low", s["value"])) for _, s, _ in points],
            "color": INK,
            "thickness": 1.5,
            "width": 8,
        },
        customdata=[[s.get("low"), s.get("high"), v] for _, s, v in points],
        hovertemplate="%{y}: ×%{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}], "
        "%{customdata[2]}<extra></extra>",
    )
    return figure
