"""``framescope compare BASELINE CANDIDATE``: two runs line by line, with intervals and verdicts; a CI gate
with ``--fail-on-regression PCT``; ``--rerun`` measures both again, interleaved.

Exit codes: 0 no regression beyond PCT shown (or no gate asked for), 1 a regression shown with confidence,
2 bad input (including a gate on runs that are not comparable or too short to judge).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from framescope.errors import ConfigError

DEFAULT_ROUNDS = 5


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "baseline",
        type=Path,
        metavar="BASELINE",
        help="the baseline: a run directory, or a directory of run directories (several runs of one job)",
    )
    parser.add_argument(
        "candidate",
        type=Path,
        metavar="CANDIDATE",
        help="the candidate, the same way (with --rerun: a run directory or a YAML run config to measure)",
    )
    parser.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="a CI gate: exit 1 when a --metric is slower by more than PCT percent with confidence (the "
        "verdict is 'slower' and the whole 95 %% interval lies beyond PCT), else 0",
    )
    parser.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="what the gate checks: throughput (default) or a stage (exec, decode, prep, read, h2d, ...); "
        "repeat for several",
    )
    parser.add_argument(
        "--format", choices=("table", "markdown"), default="table", help="table (default) or markdown"
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON, for scripts")
    parser.add_argument(
        "--force",
        action="store_true",
        help="gate even when the two runs are different jobs (model, input, batch size or mode differ)",
    )
    rerun = parser.add_argument_group("measuring again (--rerun)")
    rerun.add_argument(
        "--rerun",
        action="store_true",
        help="run BASELINE's configuration and CANDIDATE's again, interleaved (A B, B A, ...), each until "
        "its rate is stable, and compare the rounds pairwise",
    )
    rerun.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        metavar="N",
        help=f"--rerun: interleaved rounds, at least 3 (default: {DEFAULT_ROUNDS})",
    )
    rerun.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="--rerun: where the rounds' run directories go (default: BASELINE's parent directory)",
    )


def _metrics(args: argparse.Namespace, comparison: Any) -> list[str]:
    from framescope.compare import THROUGHPUT, resolve_metric

    columns = [line.metric for line in comparison.lines if line.metric != THROUGHPUT]
    try:
        return [resolve_metric(name, columns) for name in (args.metric or [THROUGHPUT])]
    except ValueError as exc:
        raise ConfigError(f"--metric: {exc}.") from None


def _gate(args: argparse.Namespace, comparison: Any) -> dict[str, Any] | None:
    """The gate's decision and sentence, or None without --fail-on-regression; ConfigError when the two
    runs cannot be gated (different jobs, too few steps)."""
    pct = args.fail_on_regression
    metrics = _metrics(args, comparison)
    if pct is None:
        return None
    if comparison.not_comparable and not args.force:
        raise ConfigError(
            f"cannot gate: the runs are different jobs ({'; '.join(comparison.not_comparable)}); compare two "
            "runs of one job, or pass --force."
        )
    lines = [comparison.line(metric) for metric in metrics]
    unjudged = [line.label for line in lines if line is not None and line.ratio is None]
    if unjudged:
        raise ConfigError(
            f"cannot gate on {', '.join(unjudged)}: too few steady steps to judge; run both longer (more "
            "frames, a larger --max-steps) or use --rerun."
        )
    regressions = comparison.regressions(pct, metrics)
    if regressions:
        worst = regressions[0]
        message = (
            f"FAIL: {worst.label} slower by {abs(worst.change_pct):.1f} % "
            f"(95 % CI beyond the {pct:g} % allowed)"
            + (f", and {len(regressions) - 1} more" if len(regressions) > 1 else "")
        )
    else:
        message = (
            f"pass: no {'/'.join(line.label for line in lines if line)} regression beyond {pct:g} % shown"
        )
    return {
        "threshold_pct": pct,
        "metrics": metrics,
        "regressions": [line.metric for line in regressions],
        "failed": bool(regressions),
        "message": message,
    }


def _comparison(args: argparse.Namespace, console: Console) -> Any:
    from framescope.compare import compare_paths, config_of, rerun

    if not args.rerun:
        return compare_paths(args.baseline, args.candidate)
    if args.rounds < 3:
        raise ConfigError(f"--rounds {args.rounds} is too few for an interval; pass --rounds 3 or more.")
    base_config = config_of(args.baseline, "baseline")
    cand_config = config_of(args.candidate, "candidate")
    output_dir = args.output_dir or (args.baseline if args.baseline.is_dir() else args.baseline.parent).parent

    def tell(trial: Any) -> None:
        rate = f"{trial.fps:.1f} FPS" if trial.fps else trial.status
        stable = "" if trial.stable or trial.status != "complete" else " (not stable)"
        console.print(f"  round {trial.round + 1} {trial.candidate}: {rate}{stable}", markup=False)

    comparison, parent, interrupted = rerun(
        base_config,
        cand_config,
        output_dir=output_dir,
        rounds=args.rounds,
        names=(str(args.baseline), str(args.candidate)),
        on_trial=tell,
    )
    console.print(f"runs and compare.json: {parent}", markup=False)
    if interrupted:
        comparison.warnings.append("interrupted with Ctrl-C: the comparison uses the rounds that finished")
        args.interrupted = True
    return comparison


def compare_command(args: argparse.Namespace) -> int:
    from framescope.report.compare_text import comparison_markdown, comparison_table, context_lines

    machine_readable = args.json or args.format == "markdown"
    console = Console(file=sys.stderr if machine_readable else sys.stdout, soft_wrap=True)
    comparison = _comparison(args, console)
    gate = _gate(args, comparison)
    if args.json:
        print(json.dumps({**comparison.as_dict(), "gate": gate}, indent=2))
    elif args.format == "markdown":
        print(comparison_markdown(comparison, gate), end="")
    else:
        for line in context_lines(comparison):
            console.print(line, markup=False)
        console.print(comparison_table(comparison))
        if gate is not None:
            console.print(
                f"gate: {gate['message']}", markup=False, style="bold red" if gate["failed"] else None
            )
    if getattr(args, "interrupted", False):
        return 130  # Ctrl-C: what finished is printed, but a cut-short gate is no verdict
    return 1 if gate is not None and gate["failed"] else 0
