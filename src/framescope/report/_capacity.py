"""The HTML report's view of a capacity directory: the latency percentile and on-time FPS against the camera
count (budget marked, each trial coloured by its verdict), what was measured, and the trials.

Reads ``capacity.json`` only (the verdicts were computed by :mod:`framescope.stats` during the search);
nothing here computes a statistic.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import plotly.graph_objects as go

from framescope.report._sections import chart, table
from framescope.report._style import RUN_COLORS, figure_with

PASS_COLOR, FAIL_COLOR = "#1a7f37", "#a40e26"


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _trials(report: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(report["trials"], key=lambda t: t["cameras"])  # stable: run order within a count


def latency_by_cameras(report: dict[str, Any]) -> go.Figure | None:
    """Each trial's p50 and p(percentile) frame latency at its camera count; the budget a line."""
    trials = [t for t in _trials(report) if t.get("p99_ms") is not None]
    if not trials:
        return None
    pct = report["percentile"]
    figure = figure_with(f"Frame latency (p{pct:g}) against cameras", 420)
    figure.add_trace(
        go.Scatter(
            x=[t["cameras"] for t in trials],
            y=[t["p99_ms"] for t in trials],
            mode="markers+lines",
            name=f"p{pct:g}",
            line={"color": RUN_COLORS[0], "width": 1.5},
            marker={
                "size": 11,
                "color": [PASS_COLOR if t["verdict"] == "pass" else FAIL_COLOR for t in trials],
                "symbol": [
                    ("diamond" if t.get("phase") == "confirm" else "circle")
                    + ("" if t["confident"] else "-open")
                    for t in trials
                ],
                "line": {
                    "width": 2,
                    "color": [PASS_COLOR if t["verdict"] == "pass" else FAIL_COLOR for t in trials],
                },
            },
            customdata=[[t["verdict"], t["setting"], t["frames"]] for t in trials],
            hovertemplate="%{x} cameras (%{customdata[1]}): %{y:.1f} ms, %{customdata[0]}, "
            "%{customdata[2]} frames<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[t["cameras"] for t in trials],
            y=[t.get("p50_ms") for t in trials],
            mode="markers",
            name="p50",
            marker={"size": 7, "color": RUN_COLORS[1]},
            hovertemplate="%{x} cameras: p50 %{y:.1f} ms<extra></extra>",
        )
    )
    figure.add_hline(
        y=report["budget_ms"],
        line={"color": FAIL_COLOR, "dash": "dash", "width": 1.5},
        annotation_text=f"budget {report['budget_ms']:g} ms",
        annotation_position="top left",
    )
    figure.update_xaxes(title_text="cameras", type="log", dtick=0.30103, tickformat="d")
    # a linear latency axis: on a log axis plotly reads the budget line's label position as an exponent
    figure.update_yaxes(title_text="frame latency (ms)", rangemode="tozero")
    return figure


def on_time_by_cameras(report: dict[str, Any]) -> go.Figure | None:
    """Each trial's on-time FPS (frames within the budget a second) against what the cameras sent."""
    trials = [t for t in _trials(report) if t.get("on_time_fps") is not None]
    if not trials:
        return None
    fps = float(report["source_fps"])
    figure = figure_with("On-time FPS against cameras", 420)
    counts = sorted({t["cameras"] for t in trials})
    figure.add_trace(
        go.Scatter(
            x=counts,
            y=[n * fps for n in counts],
            mode="lines",
            name=f"sent ({fps:g} FPS a camera)",
            line={"color": "#8c959f", "dash": "dot", "width": 1.5},
            hovertemplate="%{x} cameras send %{y:.0f} FPS<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[t["cameras"] for t in trials],
            y=[t["on_time_fps"] for t in trials],
            mode="markers+lines",
            name="on time",
            line={"color": RUN_COLORS[0], "width": 1.5},
            marker={
                "size": 11,
                "color": [PASS_COLOR if t["verdict"] == "pass" else FAIL_COLOR for t in trials],
            },
            customdata=[[t["verdict"], t["setting"]] for t in trials],
            hovertemplate="%{x} cameras (%{customdata[1]}): %{y:.1f} FPS on time, %{customdata[0]}"
            "<extra></extra>",
        )
    )
    answer = report.get("cameras")
    if answer:
        figure.add_vline(x=answer, line={"color": PASS_COLOR, "dash": "dash", "width": 1.5})
        figure.add_annotation(  # on a log axis an annotation's x is the exponent (a vline's label is not)
            x=math.log10(answer),
            y=1,
            yref="paper",
            text=f"capacity {answer}",
            showarrow=False,
            xanchor="right",
            yanchor="top",
            font={"color": PASS_COLOR},
        )
    figure.update_xaxes(title_text="cameras", type="log", dtick=0.30103, tickformat="d")
    figure.update_yaxes(title_text="frames a second", rangemode="tozero")
    return figure


def _trials_table(report: dict[str, Any]) -> str:
    pct = report["percentile"]
    header = ["cameras", "run", "setting", "max batch", "max delay ms", "verdict", "p50 ms", f"p{pct:g} ms",
              "late %", "dropped %", "on-time FPS", "frames", "s", "why"]  # fmt: skip
    rows = []
    for t in _trials(report):
        badge_class = "complete" if t["verdict"] == "pass" else "failed"
        verdict = t["verdict"] + ("" if t["confident"] else " (not confident)")
        cells = [
            str(t["cameras"]),
            escape(t.get("phase", "search")),
            escape(t["setting"]),
            str(t["max_batch"]),
            _number(t.get("max_delay_ms"), 0),
            f'<span class="badge {badge_class}">{escape(verdict)}</span>',
            _number(t.get("p50_ms")),
            _number(t.get("p99_ms")),
            _number(100 * t["late_share"] if t.get("late_share") is not None else None, 2),
            _number(100 * t["drop_share"] if t.get("drop_share") is not None else None, 2),
            _number(t.get("on_time_fps")),
            str(t.get("frames", "-")),
            _number(t.get("seconds")),
            escape(t.get("why") or ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def capacity_section(report: dict[str, Any], prefix: str) -> str:
    """One capacity search: the answer, how it was judged, the two charts and the trials."""
    pct, budget = report["percentile"], report["budget_ms"]
    rule = report.get("rule") or {}
    best = report.get("best_setting")
    facts = [
        ["capacity directory", str(report.get("capacity_dir", ""))],
        [
            "model, input",
            f"{report.get('model')}, {report.get('input')} at {report['source_fps']:g} FPS a camera",
        ],
        [
            "answer",
            f"{report['cameras']} camera(s) within p{pct:g} {budget:g} ms, at most "
            f"{100 * report['max_drop_share']:g} % dropped"
            + (
                f", confirmed by {report.get('confirm_rounds')} more run(s)"
                if report.get("confirmed")
                else ""
            )
            + ("" if report.get("done") else " (search not finished)"),
        ],
        ["first count that failed", str(report.get("first_failed") or "none (up to --max-cameras)")],
        [
            "served with",
            f"--max-batch {best['max_batch']}"
            + (f" --max-delay-ms {best['max_delay_ms']:g}" if best.get("max_delay_ms") is not None else "")
            if best
            else "-",
        ],
        [
            "each trial",
            f"until its verdict was known with {100 * float(rule.get('confidence', 0.95)):g} % confidence "
            f"(exact binomial test on the frames past the budget and the frames dropped), "
            f"{rule.get('min_seconds')}-{rule.get('max_seconds')} s",
        ],
    ]
    decode, limit = report.get("decode"), report.get("limit")
    if decode:
        facts.append(
            [
                "decoding",
                f"{decode['ms_per_frame']:.2f} ms a frame ({decode['decoder']}, {decode.get('width')}x"
                f"{decode.get('height')}; {decode.get('method')})",
            ]
        )
    if limit:
        facts.append(
            [
                "bound by",
                f"{limit['bound_by']}: decoding {limit['decode_ms_per_frame']:.2f} ms against "
                f"{limit['pipeline_ms_per_frame']:.2f} ms of pipeline work a frame (at "
                f"{limit['measured_at_cameras']} cameras)",
            ]
        )
    interrupted = (
        '<p class="notice">This search was interrupted: the answer rests on the trials finished.</p>'
        if report.get("interrupted")
        else ""
    )
    notes = "".join(f"<li>{escape(note)}</li>" for note in report.get("notes") or [])
    charts = [
        chart(
            latency_by_cameras(report),
            f"{prefix}-latency",
            f"Green passed, red failed; a diamond is a confirmation run of the answer, an open marker a "
            f"verdict on point estimates. p{pct:g} of every frame's latency from when it was due to when its "
            "result was ready.",
        ),
        chart(
            on_time_by_cameras(report),
            f"{prefix}-on-time",
            f"Frames a second whose result was ready within {budget:g} ms, against the frames the cameras "
            "sent.",
        ),
    ]
    return (
        f"<section><h2>{escape('Capacity: ' + str(report.get('model')))}</h2>"
        f"{interrupted}{table(facts)}"
        f'<div class="grid">{"".join(charts)}</div>'
        f"<h3>Trials</h3>{_trials_table(report)}"
        + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )
