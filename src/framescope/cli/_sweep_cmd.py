"""``framescope sweep``: one job over lists of run settings (``--batch-size 1,2,4,8 --use-amp off,on``), each
point run until its rate is stable; a line per run as it ends, then the table and the verdicts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from framescope.cli._flags import add_setting_arguments, shown_default
from framescope.config import RunConfig, flat_settings
from framescope.errors import ConfigError
from framescope.experiment import StopRule
from framescope.sweep import SEARCHES, SWEEPABLE

REPORT_FILE = "report.html"


def _no_list(flag: str, convert: Callable[[str], Any] | None) -> Callable[[str], Any]:
    """An argparse ``type`` that refuses a comma list for a setting a sweep cannot vary."""

    def check(text: str) -> Any:
        if "," in text:
            raise argparse.ArgumentTypeError(
                f"{flag} takes one value in a sweep; the settings a sweep varies are "
                f"{', '.join(_flag(name) for name in SWEEPABLE)}"
            )
        return convert(text) if convert is not None else text

    return check


def _flag(name: str) -> str:
    return next(s.spec.flag for s in flat_settings(RunConfig) if s.name == name) or name


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``framescope run`` flag; the sweepable ones take comma lists; then the sweep's own."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML run config (the shape of a run's config.yaml): the base every point starts from",
    )
    lists = parser.add_argument_group(
        "swept settings (a comma list sweeps a setting; one value sets it for every point)"
    )
    by_name = {s.name: s for s in flat_settings(RunConfig)}
    for setting in (by_name[name] for name in SWEEPABLE):
        text = setting.spec.help.replace("%", "%%")
        extra: dict[str, Any] = {"metavar": "LIST"}
        if setting.type is bool:
            extra = {"nargs": "?", "const": "on", "metavar": "off,on"}
        parser_default = shown_default(setting)
        lists.add_argument(
            *setting.spec.options,
            dest=setting.name,
            default=argparse.SUPPRESS,
            help=f"{text} (default: {parser_default})",
            **extra,
        )
    add_setting_arguments(parser, RunConfig, required=False, group="run settings", skip=SWEEPABLE)
    single = {s.name: s for s in flat_settings(RunConfig) if s.name not in SWEEPABLE}
    for action in parser._actions:
        found = single.get(action.dest)
        if found is None or not action.option_strings or action.nargs is not None:
            continue
        if found.type in (int, float) or found.choices is not None:  # paths and core lists may hold ","
            action.type = _no_list(action.option_strings[-1], action.type)  # type: ignore[arg-type]
    sweep = parser.add_argument_group("the sweep")
    sweep.add_argument(
        "--search",
        choices=SEARCHES,
        default="grid",
        help="grid: every combination; ofat: one factor at a time, each list varied alone from the first "
        "value of every list (default: grid)",
    )
    sweep.add_argument(
        "--rounds", type=int, default=1, metavar="N", help="interleaved repeats of every point (default: 1)"
    )
    sweep.add_argument(
        "--p99-budget-ms",
        type=float,
        metavar="MS",
        help="name the fastest point whose p99 step latency is within MS",
    )
    rule = StopRule()
    sweep.add_argument(
        "--min-steps",
        type=int,
        default=rule.min_steps,
        metavar="N",
        help=f"each run measures at least N steps before its rate may count as stable (default: "
        f"{rule.min_steps})",
    )
    sweep.add_argument(
        "--max-seconds",
        type=float,
        default=rule.max_seconds,
        metavar="S",
        help=f"each run stops after S seconds even when its rate is not stable yet (default: "
        f"{rule.max_seconds:g})",
    )
    sweep.add_argument("--json", action="store_true", help="print sweep.json on stdout, for scripts")
    sweep.add_argument(
        "--report",
        action="store_true",
        help=f"write {REPORT_FILE} with the sweep's charts into its directory",
    )


def sweep_from_args(args: argparse.Namespace, *, run: Any = None) -> Any:
    """The :class:`~framescope.sweep.Sweep` the flags describe, every point checked."""
    from framescope.cli._run_cmd import config_from_args
    from framescope.sweep import Sweep, parse_list

    given = vars(args)
    lists = {name: parse_list(name, given[name]) for name in SWEEPABLE if name in given}
    axes = {name: values for name, values in lists.items() if len(values) > 1}
    fixed = {name: values[0] for name, values in lists.items() if len(values) == 1}  # one value: every point
    rest = argparse.Namespace(**{k: v for k, v in given.items() if k not in SWEEPABLE})
    base = config_from_args(rest).replace(**fixed)
    if "," in base.model.name:
        raise ConfigError(
            f"--model-name {base.model.name!r}: a sweep measures one model; run one sweep per model."
        )
    stop = StopRule(min_steps=args.min_steps, max_seconds=args.max_seconds)
    return Sweep(
        base,
        axes,
        search=args.search,
        rounds=args.rounds,
        stop=stop,
        p99_budget_ms=args.p99_budget_ms,
        run=run,
    )


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def trial_line(done: int, total: int, trial: Any, row: dict[str, Any]) -> str:
    """One line per finished run: the point, its round and what it measured (or why it has no rate)."""
    head = f"[{done}/{total}] {trial.candidate} round {trial.round + 1}:"
    if trial.status == "oom":
        return f"{head} out of memory ({trial.error})"
    if trial.status == "failed":
        return f"{head} failed ({trial.error})"
    p99 = (trial.result.summary.get("stages") or {}).get("total_step_latency_ms", {}).get("p99_ms")
    rate = f"{trial.fps:.1f} FPS" if trial.fps else "no steady rate"
    how = "stable" if trial.stable else "NOT stable (input ended or time cap)"
    return f"{head} {rate}, p99 step {_ms(p99)} ms, {trial.steps} steps, {how}"


def points_table(report: dict[str, Any]) -> Table:
    """The points: the swept settings, status, rate, step and frame latency, memory."""
    table = Table(box=box.SIMPLE_HEAD, title="sweep points", title_justify="left", pad_edge=False)
    swept = list(report["axes"])
    live = any(p.get("frame_p99_ms") is not None for p in report["points"])
    for name in swept:
        table.add_column(name, no_wrap=True, max_width=16, overflow="ellipsis")
    for name in ("status", "rounds", "FPS", "p50 ms", "p99 ms", *(["frame p99"] if live else []), "host MB"):
        table.add_column(name, justify="left" if name == "status" else "right", no_wrap=True)
    front = set(report.get("pareto_front") or [])
    for point in report["points"]:
        rounds = f"{point['stable_rounds']}/{point['rounds']}" if point["rounds"] else "-"
        status = point["status"] + ("*" if point["point"] in front else "")
        style = {"oom": "red", "failed": "red", "unstable": "yellow"}.get(point["status"], "")
        table.add_row(
            *(str(point.get(name, "")) for name in swept),
            f"[{style}]{status}[/]" if style else status,
            rounds,
            _ms(point.get("steady_fps")),
            _ms(point.get("step_p50_ms")),
            _ms(point.get("step_p99_ms")),
            *([_ms(point.get("frame_p99_ms"))] if live else []),
            f"{point['host_peak_mb']:.0f}" if point.get("host_peak_mb") is not None else "-",
        )
    table.caption = "rounds: stable/run; * on the Pareto front of FPS against p99 step latency"
    table.caption_justify = "left"
    return table


def _verdict(label: str, brief: dict[str, Any] | None, note: str | None) -> str:
    if brief is None:
        return f"{label}: none ({note})" if note else f"{label}: none"
    return (
        f"{label}: {brief['point']} ({brief['steady_fps']:.1f} FPS, p99 step {brief['step_p99_ms']:.1f} ms)"
    )


def print_sweep(console: Console, report: dict[str, Any]) -> None:
    if report["points"]:
        console.print(points_table(report))
    console.print(_verdict("best throughput", report.get("best"), None), markup=False)
    budget = report.get("p99_budget_ms")
    label = f"best within p99 {budget:g} ms" if budget is not None else "best within a p99 budget"
    console.print(_verdict(label, report.get("best_under_budget"), report.get("budget_note")), markup=False)
    console.print(_verdict("knee", report.get("knee"), report.get("knee_note")), markup=False)
    for note in report.get("notes") or []:
        console.print(f"note: {note}", markup=False)


def sweep_command(args: argparse.Namespace, stream: TextIO | None = None, run: Any = None) -> int:
    sweep = sweep_from_args(args, run=run)
    out = stream or sys.stdout
    told = sys.stderr if args.json else out
    console = Console(file=told, highlight=False, width=None if told.isatty() else 100)
    total = len(sweep.points) * sweep.rounds
    finished = [0]

    def progress(trial: Any, row: dict[str, Any]) -> None:
        finished[0] += 1
        console.print(trial_line(finished[0], total, trial, row), markup=False, soft_wrap=True)

    sweep.on_trial = progress
    sweep_dir = sweep.create()
    axes = ", ".join(f"{name} {len(values)}" for name, values in sweep.axes.items())
    console.print(
        f"sweep of {sweep.base.model.name}: {len(sweep.points)} points ({args.search}: {axes}), "
        f"{sweep.rounds} round(s), each run until its rate is stable (at most {sweep.stop.max_seconds:g} s)",
        markup=False,
    )
    console.print(f"  into {sweep_dir}", markup=False, soft_wrap=True)

    def first_interrupt(signum: int, frame: FrameType | None) -> None:
        sweep.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops the run itself
        console.print(
            "stopping after the run in progress (Ctrl-C again to stop it now)", markup=False, soft_wrap=True
        )

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        report = sweep.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    print_sweep(console, report)
    if args.report:
        from framescope.report import write_report

        path = write_report([sweep_dir], sweep_dir / REPORT_FILE)
        console.print(f"report: {path}", markup=False, soft_wrap=True)
    console.print(f"sweep directory: {sweep_dir}", markup=False, soft_wrap=True)
    if args.json:
        out.write(json.dumps(report, indent=2, default=str) + "\n")
    if report["interrupted"]:
        console.print(
            "interrupted: every finished point is kept in sweep.csv; the points not run are listed in "
            "sweep.json",
            markup=False,
        )
        return 128 + signal.SIGINT
    measured = [p for p in report["points"] if p["status"] in ("ok", "unstable")]
    return 0 if measured else 1
