"""A comparison as text: a rich table for the terminal, Markdown for a pull-request comment."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table

from framescope.compare import Comparison, Line

VERDICT_STYLE = {"faster": "bold green", "slower": "bold red"}


def _number(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if unit == "FPS" or value >= 10 else f"{value:.2f}"


def change_text(line: Line) -> str:
    return f"{line.change_pct:+.1f} %" if math.isfinite(line.change_pct) else "-"


def interval_text(line: Line) -> str:
    """The interval of the change, in percent: ``-38.0 … -31.9 %``."""
    if line.ratio is None or not math.isfinite(line.ratio.high):
        return "-"
    return f"{(line.ratio.low - 1) * 100:+.1f} … {(line.ratio.high - 1) * 100:+.1f} %"


def noise_text(line: Line) -> str:
    return f"±{line.noise * 100:.1f} %" if line.noise and math.isfinite(line.noise) else "-"


def headline(comparison: Comparison) -> str:
    """One sentence: the throughput verdict and change, or why there is none."""
    line = comparison.line("throughput")
    prefix = "" if comparison.comparable else "NOT COMPARABLE: "
    if line is None or line.ratio is None:
        return f"{prefix}no throughput verdict ({line.verdict if line else 'no steps'})"
    return f"{prefix}throughput {line.verdict} ({change_text(line)}, 95 % CI {interval_text(line)})"


def comparison_table(comparison: Comparison) -> Table:
    method = {
        "rounds": f"{comparison.rounds} interleaved rounds, paired (t interval on log ratios)",
        "runs": "independent runs per side (t interval on log values, run-to-run variance pooled)",
    }.get(comparison.method, "steady steps, moving-block bootstrap, noise floor from each run's quarters")
    table = Table(box=box.SIMPLE_HEAD, title=headline(comparison), caption=method, title_justify="left")
    table.add_column("metric")
    for name in ("baseline", "candidate", "change", "95 % CI"):
        table.add_column(name, justify="right")
    if comparison.method == "steps":
        table.add_column("noise", justify="right")
    table.add_column("verdict")
    for line in comparison.lines:
        cells = [
            f"{line.label} ({line.unit})",
            _number(line.baseline, line.unit),
            _number(line.candidate, line.unit),
            change_text(line),
            interval_text(line),
        ]
        if comparison.method == "steps":
            cells.append(noise_text(line))
        style = VERDICT_STYLE.get(line.verdict, "")
        cells.append(f"[{style}]{line.verdict}[/]" if style else line.verdict)
        table.add_row(*cells)
    return table


def context_lines(comparison: Comparison) -> list[str]:
    """What the candidate changed, why it is not comparable, what weakens it."""
    lines = [f"baseline:  {comparison.baseline}", f"candidate: {comparison.candidate}"]
    if comparison.changed:
        lines.append("changed: " + "; ".join(comparison.changed))
    lines += [f"not comparable: {reason}" for reason in comparison.not_comparable]
    lines += [f"warning: {warning}" for warning in comparison.warnings]
    return lines


def comparison_markdown(comparison: Comparison, gate: dict[str, Any] | None = None) -> str:
    """A Markdown section ready for a pull-request comment."""
    out = [f"### framescope compare: {headline(comparison)}", ""]
    out.append(f"Baseline `{comparison.baseline}` · candidate `{comparison.candidate}`")
    if comparison.method == "rounds":
        out.append(f"({comparison.rounds} interleaved rounds, paired)")
    elif comparison.method == "runs":
        out.append("(several runs per side)")
    out += [
        "",
        "| metric | baseline | candidate | change | 95 % CI | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for line in comparison.lines:
        verdict = f"**{line.verdict}**" if line.verdict in VERDICT_STYLE else line.verdict
        out.append(
            f"| {line.label} ({line.unit}) | {_number(line.baseline, line.unit)} | "
            f"{_number(line.candidate, line.unit)} | {change_text(line)} | {interval_text(line)} | "
            f"{verdict} |"
        )
    out.append("")
    if comparison.changed:
        out.append("Changed: " + ", ".join(f"`{change}`" for change in comparison.changed))
        out.append("")
    for reason in comparison.not_comparable:
        out.append(f"> **Not comparable:** {reason}")
    for warning in comparison.warnings:
        out.append(f"> Warning: {warning}")
    if comparison.not_comparable or comparison.warnings:
        out.append("")
    if gate is not None:
        out.append(f"**Gate:** {gate['message']}")
    return "\n".join(out).rstrip() + "\n"
