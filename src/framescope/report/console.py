"""Console rendering of a finished run: the machine, per-stage statistics and the headline numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from framescope.records import RunResult
from framescope.report._facts import (
    SOURCE_HEADER,
    STAGE_HEADER,
    STAGE_LABELS,
    cpu_lines,
    live_lines,
    pace_lines,
    source_row,
    stage_rows,
    system_rows,
)

__all__ = ["STAGE_LABELS", "sources_table", "summary_lines", "summary_table", "system_table"]

SOURCES_SHOWN = 16
"""Sources listed one per line; past this many, the fewest-served and slowest are listed, then a count."""


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


def sources_table(summary: dict[str, Any]) -> Table | None:
    """Several sources: frames, drops, latency and on-time rate per source, then all together. With many
    sources, the ones a user must see (fewest frames, largest p99) are kept and the rest counted."""
    sources = summary.get("sources")
    if not sources:
        return None
    entries = list(sources["per_source"])
    hidden = 0
    if len(entries) > SOURCES_SHOWN:
        worst = sorted(entries, key=lambda e: (e["frames"], -(e.get("latency_p99_ms") or 0.0)))
        keep = {e["source"] for e in worst[: SOURCES_SHOWN // 2]}
        keep |= {
            e["source"]
            for e in sorted(entries, key=lambda e: -(e.get("latency_p99_ms") or 0.0))[: SOURCES_SHOWN // 2]
        }
        hidden = len(entries) - len(keep)
        entries = [e for e in entries if e["source"] in keep]

    table = Table(title=f"per source ({sources['count']} sources)", title_justify="left")
    table.add_column(SOURCE_HEADER[0], no_wrap=True, max_width=40, overflow="ellipsis")
    for name in SOURCE_HEADER[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for entry in entries:
        uri = str(entry.get("uri", ""))
        table.add_row(*source_row(f"{entry['source']}: {uri if '://' in uri else Path(uri).name}", entry))
    label = "all" + (f" ({hidden} more not listed)" if hidden else "")
    table.add_row(*source_row(label, sources["overall"]), style="bold")
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
