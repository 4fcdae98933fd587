"""``framescope capacity``: how many cameras of a clip one model serves within a latency budget; a line per
trial as it ends, then the trials, the answer, the settings that served it and what bounds it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from framescope.cli._flags import add_setting_arguments
from framescope.errors import ConfigError

REPORT_FILE = "report.html"
OWN = (
    "cameras",
    "batching",
    "max_batch",
    "max_delay_ms",
    "deadline_ms",
    "loop",
    "max_steps",
    "torch_profile",
)
"""Run settings capacity sets itself (or takes as lists), so they are not run flags here."""


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    from framescope.capacity import TailRule
    from framescope.config import RunConfig

    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML run config (the shape of a run's config.yaml): the base every trial starts from",
    )
    add_setting_arguments(parser, RunConfig, required=False, group="run settings", skip=OWN)
    own = parser.add_argument_group("the capacity search")
    own.add_argument(
        "--p99-budget-ms",
        type=float,
        required=True,
        metavar="MS",
        help="the latency budget: a frame's result ready within MS of the frame being due (required)",
    )
    rule = TailRule(budget_ms=1.0)
    own.add_argument(
        "--percentile",
        type=float,
        default=rule.percentile,
        metavar="P",
        help=f"the latency percentile held to the budget (default: {rule.percentile:g})",
    )
    own.add_argument(
        "--max-drop-pct",
        type=float,
        default=100 * rule.max_drop,
        metavar="PCT",
        help="the largest share of frames that may be dropped, in percent (default: "
        f"{100 * rule.max_drop:g})",
    )
    own.add_argument(
        "--max-cameras", type=int, default=64, metavar="N", help="the most cameras tried (default: 64)"
    )
    own.add_argument(
        "--max-batch",
        metavar="LIST",
        default=None,
        help="dynamic batching's largest batch, one value or a comma list tried at every camera count "
        "(default: the camera count, one frame per camera)",
    )
    own.add_argument(
        "--max-delay-ms",
        metavar="LIST",
        default=None,
        help="the longest a frame waits for its batch to fill, one value or a comma list (default: one "
        "frame interval at --source-fps)",
    )
    own.add_argument(
        "--confidence",
        type=float,
        default=rule.confidence,
        metavar="C",
        help=f"the confidence each trial's verdict needs (default: {rule.confidence:g})",
    )
    own.add_argument(
        "--min-seconds",
        type=float,
        default=rule.min_seconds,
        metavar="S",
        help=f"each trial runs at least S seconds (default: {rule.min_seconds:g})",
    )
    own.add_argument(
        "--max-seconds",
        type=float,
        default=rule.max_seconds,
        metavar="S",
        help=f"a trial whose verdict is still open after S seconds is judged on its point estimates "
        f"(default: {rule.max_seconds:g})",
    )
    own.add_argument(
        "--confirm-rounds",
        type=int,
        default=2,
        metavar="N",
        help="fresh runs the answer must pass again before it stands; a failure moves the search below it; "
        "0: none (default: 2)",
    )
    own.add_argument(
        "--confirm-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="each confirmation run lasts at least S seconds (default: 30)",
    )
    own.add_argument("--json", action="store_true", help="print capacity.json on stdout, for scripts")
    own.add_argument(
        "--report",
        action="store_true",
        help=f"write {REPORT_FILE} with the capacity charts into its directory",
    )


def _numbers(text: str | None, flag: str, kind: type) -> list[Any]:
    if text is None:
        return [None]
    values = []
    for part in str(text).split(","):
        try:
            values.append(kind(part.strip()))
        except ValueError:
            raise ConfigError(
                f"{flag} {text!r}: {part.strip()!r} is not a number; pass e.g. {flag} 4,8,16."
            ) from None
    return values


def capacity_from_args(args: argparse.Namespace, *, run: Any = None) -> Any:
    """The :class:`~framescope.capacity.Capacity` the flags describe, every setting checked."""
    from framescope.capacity import Capacity, Setting, TailRule
    from framescope.cli._run_cmd import config_from_args

    given = vars(args)
    own = {"max_batch", "max_delay_ms"}
    base = config_from_args(argparse.Namespace(**{k: v for k, v in given.items() if k not in own}))
    settings = [
        Setting(batch, delay)
        for batch in _numbers(args.max_batch, "--max-batch", int)
        for delay in _numbers(args.max_delay_ms, "--max-delay-ms", float)
    ]
    rule = TailRule(
        budget_ms=args.p99_budget_ms,
        percentile=args.percentile,
        max_drop=args.max_drop_pct / 100.0,
        confidence=args.confidence,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
    )
    return Capacity(
        base,
        rule,
        max_cameras=args.max_cameras,
        settings=settings,
        run=run,
        confirm_rounds=args.confirm_rounds,
        confirm_seconds=args.confirm_seconds,
    )


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "-"


def trial_line(trial: dict[str, Any], percentile: float) -> str:
    """One line per finished trial: the camera count, the setting and the verdict with its evidence."""
    verdict = trial["verdict"].upper() + ("" if trial["confident"] else " (not confident)")
    what = "confirming" if trial.get("phase") == "confirm" else "camera(s),"
    head = f"{trial['cameras']:>3} {what} max batch {trial['max_batch']}"
    if trial.get("frames") is None:
        return f"{head}: {verdict} ({trial.get('why')})"
    return (
        f"{head}: p{percentile:g} {_ms(trial.get('p99_ms'))} ms, late {_pct(trial.get('late_share'))}, "
        f"dropped {_pct(trial.get('drop_share'))}, {trial['frames']} frames in "
        f"{_ms(trial.get('seconds'))} s: {verdict}"
    )


def trials_table(report: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="capacity trials", title_justify="left", pad_edge=False)
    several = len(report.get("settings") or []) > 1
    names = ["cameras", "run", *(["setting"] if several else []), "max batch", "verdict", "p50 ms",
             f"p{report['percentile']:g} ms", "late", "dropped", "on-time FPS", "frames"]  # fmt: skip
    for name in names:
        table.add_column(name, justify="left" if name in ("setting", "verdict") else "right", no_wrap=True)
    for trial in sorted(report["trials"], key=lambda t: t["cameras"]):  # stable: run order within a count
        verdict = trial["verdict"] + ("" if trial["confident"] else "?")
        style = "green" if trial["verdict"] == "pass" else "red"
        table.add_row(
            str(trial["cameras"]),
            trial.get("phase", "search"),
            *([trial["setting"]] if several else []),
            str(trial["max_batch"]),
            f"[{style}]{verdict}[/]",
            _ms(trial.get("p50_ms")),
            _ms(trial.get("p99_ms")),
            _pct(trial.get("late_share")),
            _pct(trial.get("drop_share")),
            _ms(trial.get("on_time_fps")),
            str(trial.get("frames") if trial.get("frames") is not None else "-"),
        )
    table.caption = (
        f"late: frames past the {report['budget_ms']:g} ms budget; ? a verdict on point estimates (the trial "
        "ended before it was known with confidence)"
    )
    table.caption_justify = "left"
    return table


def answer_lines(report: dict[str, Any]) -> list[str]:
    fps, budget, pct = report["source_fps"], report["budget_ms"], report["percentile"]
    drop = 100 * report["max_drop_share"]
    cameras = report["cameras"]
    lines = [
        f"capacity: {cameras} camera(s) of {report['model']} at {fps:g} FPS within p{pct:g} {budget:g} ms "
        f"(at most {drop:g}% dropped)"
        + (f", confirmed by {report['confirm_rounds']} more run(s)" if report.get("confirmed") else "")
        + ("" if report["done"] else " so far (the search did not finish)")
    ]
    failed = report.get("first_failed")
    if failed is not None:
        why = next((t.get("why") for t in report["trials"] if t["cameras"] == failed and t.get("why")), None)
        lines.append(f"  {failed} camera(s) did not" + (f": {why}" if why else ""))
    best = report.get("best_setting")
    if best is not None:
        delay = f" --max-delay-ms {best['max_delay_ms']:g}" if best.get("max_delay_ms") is not None else ""
        lines.append(f"  served with --batching dynamic --max-batch {best['max_batch']}{delay}")
    decode, limit = report.get("decode"), report.get("limit")
    if decode is not None:
        size = f"{decode['width']}x{decode['height']}" if decode.get("width") else "?"
        lines.append(
            f"  decoding: {decode['ms_per_frame']:.2f} ms a frame ({decode['decoder']}, {size}), "
            f"{100 * decode['core_share_per_camera']:.1f}% of a core per camera"
        )
    if limit is not None:
        lines.append(
            f"  bound by {limit['bound_by']}: decoding {limit['decode_ms_per_frame']:.2f} ms against "
            f"{limit['pipeline_ms_per_frame']:.2f} ms of pipeline work per frame (measured at "
            f"{limit['measured_at_cameras']} camera(s))"
        )
    return lines


def capacity_command(args: argparse.Namespace, stream: TextIO | None = None, run: Any = None) -> int:
    capacity = capacity_from_args(args, run=run)
    out = stream or sys.stdout
    told = sys.stderr if args.json else out
    console = Console(file=told, highlight=False, width=None if told.isatty() else 100)
    rule = capacity.rule

    def progress(trial: dict[str, Any]) -> None:
        console.print(trial_line(trial, rule.percentile), markup=False, soft_wrap=True)

    capacity.on_trial = progress
    capacity_dir = capacity.create()
    base = capacity.base
    console.print(
        f"capacity of {base.model.name}: {base.source.inputs[0]} replayed as N cameras at "
        f"{base.source.source_fps:g} FPS, p{rule.percentile:g} within {rule.budget_ms:g} ms, at most "
        f"{100 * rule.max_drop:g}% dropped; N doubling from 1 (at most {capacity.max_cameras}), then "
        f"bisection; each trial until its verdict is known with {100 * rule.confidence:g}% confidence (at "
        f"least {rule.frames_needed} frames, {rule.min_seconds:g}-{rule.max_seconds:g} s); the answer then "
        f"confirmed by {capacity.confirm_rounds} fresh run(s) of at least {capacity.confirm_seconds:g} s",
        markup=False,
    )
    console.print(f"  into {capacity_dir}", markup=False, soft_wrap=True)

    def first_interrupt(signum: int, frame: FrameType | None) -> None:
        capacity.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        console.print("stopping after the trial in progress (Ctrl-C again to stop it now)", markup=False)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        report = capacity.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if report["trials"]:
        console.print(trials_table(report))
    for line in answer_lines(report):
        console.print(line, markup=False, soft_wrap=True)
    for note in report["notes"]:
        console.print(f"note: {note}", markup=False)
    if args.report:
        from framescope.report import write_report

        path = write_report([capacity_dir], capacity_dir / REPORT_FILE)
        console.print(f"report: {path}", markup=False, soft_wrap=True)
    console.print(f"capacity directory: {capacity_dir}", markup=False, soft_wrap=True)
    if args.json:
        out.write(json.dumps(report, indent=2, default=str) + "\n")
    if report["interrupted"]:
        return 128 + signal.SIGINT
    return 0 if report["trials"] else 1
