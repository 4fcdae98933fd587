"""The HTML report's sections: one per run (facts, findings, charts, the what-if) and the comparison of
several runs. Each returns an HTML fragment; every text from a run directory is escaped, and every chart is a
``<div>`` followed by its figure as JSON, which the page's loader draws."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from framescope import stats
from framescope.records import RunResult, steady_rows
from framescope.report import _facts, _run_charts, _stage_charts, _tune
from framescope.report._facts import SOURCE_HEADER, source_row

FIGURE_CLASS = "fs-figure"
"""The class of the JSON ``<script>`` that holds a chart's figure; its ``data-target`` is the chart's div."""


def run_labels(results: Sequence[RunResult]) -> list[str]:
    """``#1 name``: the runs of a comparison can share a directory name."""
    return [f"#{index} {result.run_dir.name}" for index, result in enumerate(results, 1)]


def setting_flags() -> dict[str, str]:
    """Flat setting name -> its flag, to show a finding's overrides as the flags a user types."""
    from framescope.config import RunConfig, flat_settings

    return {s.name: s.spec.flag for s in flat_settings(RunConfig) if s.spec.flag}


# --- pieces -------------------------------------------------------------------------------------------------


def table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] | None = None,
    cls: str = "facts",
    numeric: bool = False,
) -> str:
    """Rows of text (the first cell a row heading) as an HTML table."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if header else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<th>{escape(cell)}</th>" if index == 0 else f"<td>{escape(cell)}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table class="{cls}{" numeric" if numeric else ""}">{thead}<tbody>{body}</tbody></table>'


def chart(figure: go.Figure | None, chart_id: str, caption: str = "", wide: bool = False) -> str:
    """The chart's div and its figure as JSON (nothing when there is no figure)."""
    if figure is None:
        return ""
    # "<" only occurs inside JSON strings, where \u003c means the same: no text can close the script element
    data = figure.to_json().replace("<", "\\u003c")
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure class="chart{" wide" if wide else ""}"><div id="{chart_id}" class="fs-chart"></div>'
        f'<script type="application/json" class="{FIGURE_CLASS}" data-target="{chart_id}">{data}</script>'
        f"{note}</figure>"
    )


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def findings_table(summary: dict[str, Any], flags: dict[str, str]) -> str:
    """summary.json's findings: severity, id, message, the evidence and the flags that apply the fix."""
    findings = summary.get("findings")
    if findings is None:
        return '<p class="muted">This run was not diagnosed (its summary has no findings).</p>'
    if not findings:
        return '<p class="muted">No findings: no diagnosis rule found anything to flag in this run.</p>'
    rows = []
    for finding in findings:
        severity = str(finding.get("severity", "info"))
        evidence = ", ".join(f"{k} {_number(v)}" for k, v in (finding.get("evidence") or {}).items())
        rows.append(
            f'<tr><td><span class="badge {escape(severity)}">{escape(severity)}</span></td>'
            f"<td><code>{escape(str(finding.get('id', '')))}</code></td>"
            f"<td>{escape(str(finding.get('message', '')))}</td><td>{escape(evidence or '–')}</td>"
            f"<td><code>{escape(_tune.overrides_text(finding.get('overrides'), flags))}</code></td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("severity", "id", "finding", "evidence", "fix (flags)"))
    return f'<table class="findings"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def tune_part(result: RunResult, prefix: str, flags: dict[str, str]) -> str:
    """tune.json's measured what-if, when the run directory holds one."""
    tune = _tune.read_tune(result.run_dir)
    if tune is None:
        return ""
    parts = ["<h3>Measured what-if (tune.json)</h3>"]
    if tune.problem:
        parts.append(f'<p class="notice">{escape(tune.problem)}</p>')
        return "".join(parts)
    parts.append(table(_tune.tune_rows(tune.data, flags)))
    trials = _tune.trial_rows(tune.data, flags)
    if trials:
        parts.append(table(trials, _tune.TRIAL_HEADER, cls="trials"))
    parts.append(
        chart(
            _run_charts.tune_speedups(tune.data),
            f"{prefix}-tune",
            "Each fix measured against the unchanged command: the point is its FPS speedup, the bar its "
            "interval; an interval that crosses 1.0 is no measurable change.",
            wide=True,
        )
    )
    return "".join(parts)


# --- one run ------------------------------------------------------------------------------------------------


def _stage_part(result: RunResult, prefix: str) -> str:
    s, rows = result.summary, result.rows
    steady = steady_rows(rows)
    async_run = s.get("pipeline") == "async"
    side_note = (
        "Async: the producer's stages and the model's side run at the same time; the slower side sets the "
        "pace."
        if async_run
        else "Sync: the stages run in turn and add up to the step."
    )
    return "".join(
        (
            '<h3>Where the time goes</h3><div class="grid">',
            chart(
                _stage_charts.stage_breakdown(s),
                f"{prefix}-stages",
                "Steady-state steps. Each stage's own p99 is stacked, so the p99 bar overstates the step's "
                f"p99 (the black line marks the step's). {side_note}",
            ),
            "<div><h4>Per-step latency, steady state (ms)</h4>",
            table(_facts.stage_rows(s), _facts.STAGE_HEADER, cls="stages", numeric=True),
            "</div></div>",
            chart(
                _stage_charts.timeline(rows, s),
                f"{prefix}-timeline",
                "Every recorded step. Shaded steps are left out of the summary: warm-up"
                + (", the async thread-plan trial" if async_run else "")
                + " and torch.profiler's window (its overhead inflates them).",
                wide=True,
            ),
            chart(
                _stage_charts.distributions(steady, s),
                f"{prefix}-distributions",
                f"{len(steady)} steady-state steps per stage. Boxes: quartiles and median; whiskers reach "
                "the furthest step within 1.5 interquartile ranges; circles are the steps beyond; the "
                "diamond is the summary's p99.",
                wide=True,
            ),
        )
    )


def _live_part(result: RunResult, prefix: str) -> str:
    live = result.summary.get("live")
    if not live:
        return ""
    dropped = live.get("frames_dropped_all_steps", live.get("frames_dropped", 0))
    return (
        "<h3>Live input</h3>"
        + chart(
            _run_charts.live_latency(result.rows, result.summary),
            f"{prefix}-live",
            f"{dropped} frame(s) dropped, {live.get('reconnects', 0)} reconnect(s) over the run. A batch's "
            "frames lie between its newest and its oldest frame's latency.",
            wide=True,
        )
        + _sources_part(result.summary, prefix)
    )


def _sources_part(summary: dict[str, Any], prefix: str) -> str:
    """Several sources: what each got (frames, drops, latency, on-time rate) and its latency over time."""
    sources = summary.get("sources")
    if not sources:
        return ""

    rows = [source_row(f"{e['source']}: {e.get('uri', '')}", e) for e in sources["per_source"]]
    rows.append(source_row("all", sources["overall"]))
    deadline = sources.get("deadline_ms")
    caption = (
        "Each source's mean latency per window (line) and its largest (marker), from when a frame was due to "
        "when its batch's result was ready"
        + (f"; on time: within the {deadline:.0f} ms deadline." if deadline else ".")
    )
    return (
        f"<h4>Per source ({sources['count']} sources)</h4>"
        + table(rows, SOURCE_HEADER, cls="compare")
        + chart(_run_charts.source_latency(summary), f"{prefix}-sources", caption, wide=True)
    )


def _cpu_part(result: RunResult, prefix: str) -> str:
    s = result.summary
    parts = ["<h3>CPU and threads</h3>"]
    if not s.get("cpu") or s["cpu"].get("ours") is None:
        parts.append(
            '<p class="muted">CPU use over the run was not measured (the run was shorter than the '
            "kernel's counters resolve).</p>"
        )
    threads = s.get("threads") or {}
    if threads:
        plan = [
            ("cores", f"{threads.get('cores')}{' (bound)' if threads.get('bound') else ''}"),
            ("torch threads", str(threads.get("torch"))),
            ("decode threads", str(threads.get("decode"))),
        ]
        plan.extend(("note", note) for note in threads.get("notes") or [])
        parts.append(table(plan))
    charts = (
        chart(
            _run_charts.cpu_use(s),
            f"{prefix}-cpu",
            "Average cores busy over set-up and over the run (summary cpu: ours, others, steal).",
        ),
        chart(
            _run_charts.stage_cores(s),
            f"{prefix}-stage-cores",
            "The process's CPU seconds per wall second while each stage ran: above 1, the stage ran on "
            "several cores.",
        ),
        chart(
            _run_charts.thread_wait(s),
            f"{prefix}-threads",
            "From the kernel's per-thread scheduler counters: time ready to run but waiting for a CPU is "
            "oversubscription's cost.",
        ),
        chart(
            _run_charts.thread_trial(s),
            f"{prefix}-trial",
            "The async pipeline measured each thread plan over a few steps and kept the fastest.",
        ),
    )
    parts.append(f'<div class="grid">{"".join(charts)}</div>')
    return "".join(parts)


def run_section(result: RunResult, prefix: str, label: str, flags: dict[str, str]) -> str:
    """One run: facts, findings, where the time goes, the live latency, CPU and threads, the what-if."""
    status = escape(result.status)
    return "".join(
        (
            f'<section class="run" id="{prefix}"><h2>{escape(label)} <span class="badge {status}">{status}'
            '</span></h2><div class="grid"><div><h3>Summary</h3>',
            table(_facts.headline_rows(result)),
            "</div><div><h3>Run</h3>",
            table(_facts.run_rows(result)),
            "<h3>System</h3>",
            table(_facts.system_rows(result.system)),
            "</div></div><h3>Findings</h3>",
            findings_table(result.summary, flags),
            _stage_part(result, prefix),
            _live_part(result, prefix),
            _cpu_part(result, prefix),
            tune_part(result, prefix, flags),
            "</section>",
        )
    )


# --- several runs -------------------------------------------------------------------------------------------


def _vs_first(baseline: pd.DataFrame, candidate: pd.DataFrame) -> str:
    """The ratio of the median per-step FPS to the first run's, with its bootstrap interval."""
    a, b = baseline["fps"].dropna().astype(float), candidate["fps"].dropna().astype(float)
    if a.empty or b.empty:
        return "n/a"
    ratio = stats.ratio_of_medians(a.tolist(), b.tolist())
    return f"×{ratio.value:.2f} [{ratio.low:.2f}, {ratio.high:.2f}]"


COMPARE_HEADER = (
    "run",
    "model",
    "pipeline · batch",
    "device",
    "status",
    "steady FPS",
    "step FPS vs #1 (ratio of medians, 95% CI)",
    "step p50 / p99 (ms)",
    "pace stage",
    "live p99 latency (ms)",
    "findings",
)


def comparison_section(results: Sequence[RunResult], labels: Sequence[str]) -> str:
    """Headline numbers per run, each against the first, and the stages side by side."""
    baseline = steady_rows(results[0].rows)
    rows = []
    for index, (result, label) in enumerate(zip(results, labels, strict=True)):
        s = result.summary
        total = (s.get("stages") or {}).get(_facts.TOTAL, {})
        live = s.get("live") or {}
        model = s.get("model") or {}
        rows.append(
            (
                label,
                str(model.get("name", "?")),
                f"{s.get('pipeline')} · {s.get('batch_size')}",
                str(model.get("device", "?")),
                result.status,
                f"{s['steady_fps']:.1f}" if s.get("steady_fps") else "n/a",
                "baseline" if index == 0 else _vs_first(baseline, steady_rows(result.rows)),
                f"{total['p50_ms']:.2f} / {total['p99_ms']:.2f}" if total else "n/a",
                _facts.stage_label(s["pace_stage"]) if s.get("pace_stage") else "–",
                f"{live['latency_p99_ms']:.0f}" if live.get("latency_p99_ms") is not None else "–",
                str(len(s.get("findings") or [])),
            )
        )
    figure = _stage_charts.compare_stages([r.summary for r in results], labels)
    links = "".join(f'<li><a href="#r{i}">{escape(label)}</a></li>' for i, label in enumerate(labels, 1))
    return (
        '<section class="comparison" id="comparison"><h2>Comparison</h2>'
        + table(rows, COMPARE_HEADER, cls="compare")
        + chart(figure, "compare-stages", "Steady-state means from each run's summary; hover for p50, p99.")
        + f'<ul class="runs">{links}</ul></section>'
    )
