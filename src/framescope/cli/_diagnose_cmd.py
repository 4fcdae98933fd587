"""``framescope diagnose RUN_DIR``: what the diagnosis finds in a run, with its evidence; ``--measure`` runs
the job again with each flag fix, side by side with the original, and reports what each one gained."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from framescope.diagnose import SEVERITIES

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by framescope run")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON, for scripts")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="run the job again with each flag fix, interleaved with the original, and report the measured "
        "gain (writes tune.json into RUN_DIR)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="--measure: interleaved rounds per change, at least 3 (default: 3)",
    )


def ordered(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first; rule order within a severity."""
    rank = {severity: -index for index, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: rank.get(f["severity"], 0))


def fix_text(finding: dict[str, Any]) -> str:
    from framescope.config import flags_for

    overrides = finding.get("overrides") or {}
    return " ".join(flags_for(overrides)) if overrides else ""


def finding_lines(findings: list[dict[str, Any]], *, limit: int | None = None) -> list[str]:
    """One line per finding: severity, id, the sentence and the fix as command-line flags."""
    lines = []
    for finding in ordered(findings)[:limit]:
        fix = fix_text(finding)
        lines.append(
            f"{finding['severity']} [{finding['id']}] {finding['message']}"
            + (f" -> try: {fix}" if fix else "")
        )
    return lines


def print_findings(console: Console, findings: list[dict[str, Any]]) -> None:
    if not findings:
        console.print("no findings: nothing in this run asks for attention", markup=False)
        return
    for finding in ordered(findings):
        style = SEVERITY_STYLE.get(finding["severity"], "")
        console.print(f"[{style}]{finding['severity']}[/] [bold]{finding['id']}[/]", highlight=False)
        console.print(f"  {finding['message']}", markup=False)
        evidence = ", ".join(f"{k} {_number(v)}" for k, v in (finding.get("evidence") or {}).items())
        if evidence:
            console.print(f"  evidence: {evidence}", markup=False)
        fix = fix_text(finding)
        if fix:
            console.print(f"  fix: {fix}", markup=False)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_number(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_number(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "-"
    return str(value)


def print_tune(console: Console, report: dict[str, Any]) -> None:
    """The measured changes as a table, then the recommended command and its gain."""
    trials = report.get("trials") or []
    if not trials:
        console.print("nothing to measure: no finding has a flag fix", markup=False)
        return
    table = Table(
        title=f"measured changes (at least {report.get('rounds')} interleaved rounds each)",
        box=box.SIMPLE_HEAD,
        expand=True,
        title_justify="left",
    )
    for name, ratio in (("pass", None), ("change", 3), ("flags", 4), ("against", 2), ("rounds", None),
                        ("speedup", None), ("95% CI", None), ("verdict", 3)):  # fmt: skip
        right = name in ("speedup", "95% CI", "rounds")
        table.add_column(
            name, justify="right" if right else "left", ratio=ratio, no_wrap=ratio is None, overflow="fold"
        )
    for trial in trials:
        speedup = trial.get("speedup")
        base = trial.get("base_overrides") or {}
        table.add_row(
            str(trial.get("pass") or "final"),
            trial["finding"],
            trial.get("flags", ""),
            f"pass {trial['pass'] - 1}'s best" if base and trial.get("pass") else "original",
            str(len(trial.get("candidate_fps") or [])),
            f"{speedup['value']:.2f}x" if speedup else "",
            f"{speedup['low']:.2f}-{speedup['high']:.2f}" if speedup else "",
            trial["verdict"] + (f" ({trial['error']})" if trial.get("error") else ""),
        )
    console.print(table)
    if report.get("speedup"):
        gain = report["speedup"]
        console.print(
            f"measured {gain['value']:.2f}x (95% interval {gain['low']:.2f}-{gain['high']:.2f}) with:",
            markup=False,
        )
        console.print(f"  {report['command']}", markup=False, soft_wrap=True)  # one line, to copy
    else:
        console.print("no change was measured to help; the original command stays the best", markup=False)
    for note in report.get("notes") or []:
        console.print(f"note: {note}", markup=False)
    if report.get("interrupted"):
        console.print("interrupted: the changes not measured yet are missing from the table", markup=False)


def diagnose_command(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    from framescope.config import RunConfig
    from framescope.diagnose import diagnose
    from framescope.errors import ConfigError
    from framescope.records import load_run

    if args.measure:
        check_rounds(args.rounds, "--rounds")
    run = load_run(Path(args.run_dir))
    findings = [finding.as_dict() for finding in diagnose(run)]
    console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
    if args.json and not args.measure:
        console.print_json(json.dumps({"run_dir": str(run.run_dir), "findings": findings}))
        return 0
    if not args.json:
        print_findings(console, findings)
    if not args.measure:
        return 0
    config = RunConfig.from_dict(run.config)
    if any("***" in path for path in config.source.inputs):
        raise ConfigError(
            f"{run.run_dir}'s config.yaml holds the input with its password redacted; run framescope run ... "
            "--tune with the real address instead."
        )
    # With --json, stdout is the JSON alone: the progress and the table go to stderr.
    told = Console(file=sys.stderr, highlight=False, soft_wrap=True) if args.json else console
    report = measure(config, findings, run.run_dir, rounds=args.rounds, console=told)
    if args.json:
        console.print_json(json.dumps(report, default=str))
    return 0


MIN_ROUNDS = 3
"""Fewer interleaved rounds than this give no interval worth printing."""


def check_rounds(rounds: int, flag: str) -> None:
    from framescope.errors import ConfigError

    if rounds < MIN_ROUNDS:
        raise ConfigError(
            f"{flag} {rounds} is too few: a measured change needs at least {MIN_ROUNDS} interleaved rounds "
            f"for its interval; pass {flag} {MIN_ROUNDS} or more."
        )


def measure(
    config: Any, findings: list[dict[str, Any]], run_dir: Path, *, rounds: int, console: Console
) -> dict[str, Any]:
    """Run the tuning experiment for ``findings``, printing each trial as it ends, then the table."""
    from framescope.experiment import tune

    def progress(trial: Any) -> None:
        rate = f"{trial.fps:.1f} FPS" if trial.fps else trial.status
        where = "/".join(trial.run_dir.parts[-3:-1]) if trial.run_dir is not None else trial.candidate
        console.print(f"  {where} round {trial.round + 1}: {rate}", markup=False)

    console.print(
        f"measuring the fixes against the original, {rounds} interleaved rounds each:", markup=False
    )
    report = tune(config, findings, run_dir=run_dir, rounds=rounds, on_trial=progress)
    print_tune(console, report)
    console.print(f"wrote {run_dir / 'tune.json'}", markup=False)
    return report
