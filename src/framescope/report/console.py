"""Console rendering of a finished run: the machine, per-stage statistics and the headline numbers."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from framescope.records import RunResult
from framescope.report._facts import (
    STAGE_HEADER,
    STAGE_LABELS,
    cpu_lines,
    live_lines,
    pace_lines,
    stage_rows,
    system_rows,
)

__all__ = ["STAGE_LABELS", "summary_lines", "summary_table", "system_table"]


def system_table(system: dict[str, Any]) -> Table:
    """The machine a run ran on (``system.json``)."""
    table = Table(title="system", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, text in system_rows(system):
        table.add_row(label, text)
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """Per-stage latency percentiles and each stage's share of the step."""
    table = Table(title="per-batch latency, steady state (ms)")
    for name in STAGE_HEADER:
        table.add_column(name, justify="left" if name == "stage" else "right")
    for row in stage_rows(summary):
        table.add_row(*row)
    return table


def summary_lines(result: RunResult) -> list[str]:
    """The summary's headline numbers as sentences."""
    s = result.summary
    lines = []
    if s.get("steps"):
        lines.append(
            f"{s['frames']} frames in {s['steps']} steps, {s['wall_time_s']:.2f} s: "
            f"average {s['avg_fps']:.1f} FPS"
        )
        excluded = s.get("excluded_steps", {})
        left_out = ", ".join(f"{n} {k}" for k, n in excluded.items() if n)
        steady = f"{s['steady_fps']:.1f} FPS" if s.get("steady_fps") else "n/a"
        lines.append(
            f"steady state: {steady} over {s['steady_steps']} steps"
            + (f" ({left_out} step(s) left out)" if left_out else "")
        )
        lines.extend(pace_lines(s))
        if "loss" in s:
            lines.append(f"loss: {s['loss']['first']:.4f} -> {s['loss']['last']:.4f}")
    else:
        lines.append("no steps were recorded")
    lines.extend(live_lines(s.get("live")))
    lines.extend(cpu_lines(s.get("cpu")))
    lines.extend((s.get("threads") or {}).get("notes", []))
    lines.append(
        f"timing: {s.get('timing_method')}; run time {s.get('run_time_s', 0):.1f} s including set-up"
    )
    if s.get("trace"):
        lines.append(f"torch.profiler trace: {result.run_dir / s['trace']}")
    lines.append(f"run directory: {result.run_dir}")
    return lines
