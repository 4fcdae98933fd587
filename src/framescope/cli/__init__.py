"""The command line: the only place that reads argv, prints for humans and sets exit codes.

Exit codes: 0 success; 1 a run that did not complete for a reason other than bad input; 2 bad input (one
line on stderr naming the problem and the fix, no traceback); 130 interrupted with Ctrl-C (SIGINT); 143
stopped with SIGTERM. An interrupted run still writes and prints the summary of what it measured.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from framescope._secrets import redact
from framescope._version import __version__
from framescope.errors import FramescopeError, Terminated


def _redact_record(record: logging.LogRecord) -> bool:
    """A log filter: the message (framescope's or a library's) with URL passwords masked."""
    record.msg, record.args = redact(record.getMessage()), None
    return True


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _close_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``; did you mean --batch-size?`` for a misspelt flag in argparse's "unrecognized arguments" message."""
    import difflib

    if "unrecognized arguments:" not in message:
        return ""
    known = [option for action in parser._actions for option in action.option_strings]
    words = message.split("unrecognized arguments:", 1)[1].split()
    guesses = []
    for word in words:
        if word.startswith("-"):
            flag = word.split("=", 1)[0]
            guesses += difflib.get_close_matches(
                flag.replace("_", "-"), known, n=1, cutoff=0.6
            ) or difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return f"; did you mean {' or '.join(dict.fromkeys(guesses))}?" if guesses else ""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help (with the flag meant, for a misspelt
    one); a misspelt flag of ``framescope run`` adds a short usage with examples (a newcomer's first mistake
    is there)."""

    def error(self, message: str) -> NoReturn:
        hint = _close_flags(message, self)
        if self.prog.endswith(" run") and "unrecognized arguments" in message:  # a misspelt flag
            from framescope.cli._run_cmd import short_usage

            self.exit(2, f"{self.prog}: error: {message}{hint}\n\n{short_usage()}")
        self.exit(2, f"{self.prog}: error: {message}{hint}; see {self.prog} --help.\n")


def models_command(args: argparse.Namespace) -> int:
    from framescope.models import build_model, models_by_task, split_points

    if args.split_points:
        points = split_points(build_model(args.split_points), args.split_points)
        print(f"split points of {args.split_points} (--split-point {args.split_points}:LAYER):")
        for point in points:
            print(f"  {point}")
        return 0
    for task, names in models_by_task().items():
        if args.task and task != args.task:
            continue
        print(f"{task} ({len(names)}):")
        for name in names:
            print(f"  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from framescope.cli._annotate_cmd import add_annotate_arguments, annotate_command
    from framescope.cli._capacity_cmd import add_capacity_arguments, capacity_command
    from framescope.cli._compare_cmd import add_compare_arguments, compare_command
    from framescope.cli._diagnose_cmd import add_diagnose_arguments, diagnose_command
    from framescope.cli._doctor_cmd import add_doctor_arguments, doctor_command
    from framescope.cli._extract_cmd import add_extract_arguments, extract_command
    from framescope.cli._launch_cmd import add_launch_arguments, launch_command
    from framescope.cli._report_cmd import add_report_arguments, report_command
    from framescope.cli._run_cmd import add_run_arguments, run_command
    from framescope.cli._sweep_cmd import add_sweep_arguments, sweep_command

    parser = _Parser(
        prog="framescope",
        description="Where the time goes when a PyTorch model runs on video.",
    )
    parser.add_argument("--version", action="version", version=f"framescope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary, description, add_arguments, handler in (
        (
            "doctor",
            "check what this machine can do: decoders, GPU, NVDEC, nsys, Ray, ONNX Runtime, cores, load",
            "One table of checks, each with a verdict (ok, missing, warn, fail) and a fix: Python, the "
            "torch/torchvision pair, CUDA and the GPUs, cuDNN, NVDEC per codec, FFmpeg's libraries for "
            "torchcodec, OpenCV's video backend, nsys, NVTX, Ray, ONNX Runtime, the cores and memory this "
            "process may use, and whether other processes load the cores now. Exit 0 when the default run "
            "will work, 1 otherwise.",
            add_doctor_arguments,
            doctor_command,
        ),
        (
            "run",
            "profile a model on a video, camera, stream or image folder",
            "Run a torchvision model on video and record every batch's stage latencies.",
            add_run_arguments,
            run_command,
        ),
        (
            "extract-frames",
            "write frames of a video as images, sampled by presentation time",
            "Keep --fps frames per second of video time (by presentation timestamps) as PNG or JPEG.",
            add_extract_arguments,
            extract_command,
        ),
        (
            "annotate",
            "detect objects in a folder of images: boxed images plus COCO JSON",
            "Run a torchvision detection model over images; write them with labelled boxes and one "
            "COCO-format annotations.json.",
            add_annotate_arguments,
            annotate_command,
        ),
        (
            "diagnose",
            "say why a run was as fast as it was, and what to change; --measure measures the changes",
            "The findings of a finished run directory (why, the evidence and the flag fix), the same rules "
            "every run applies at its end; --measure runs the job again with each fix, interleaved with the "
            "original, and reports the measured gain with a confidence interval.",
            add_diagnose_arguments,
            diagnose_command,
        ),
        (
            "compare",
            "compare two runs line by line with confidence intervals; a CI gate on regressions",
            "Throughput and every stage of a baseline and a candidate run: change, 95 % interval and a "
            "verdict (faster, slower, no measurable change) above a noise floor the runs themselves show. "
            "--fail-on-regression PCT exits 1 on a regression shown with confidence; --rerun measures both "
            "again, interleaved.",
            add_compare_arguments,
            compare_command,
        ),
        (
            "report",
            "write one self-contained HTML report of one run, or a comparison of several",
            "Charts and tables of finished run directories (stage latencies, timeline, distributions, live "
            "latency, CPU and threads, findings, measured what-if) in one HTML file that opens offline.",
            add_report_arguments,
            report_command,
        ),
        (
            "launch",
            "run many workers from one launch file, together, each on its own cores",
            "Workers (each a run configuration, with shared defaults and per-worker overrides) start as "
            "separate processes, wait for each other's set-up, run together and write their run directories "
            "under one launch directory with an aggregate summary.json; --solo measures each alone first.",
            add_launch_arguments,
            launch_command,
        ),
        (
            "sweep",
            "run one job over lists of settings (batch size, AMP, pipeline, ...): best, budget, knee",
            "Every combination (or one factor at a time) of the settings given as comma lists, e.g. "
            "--batch-size 1,2,4,8 --use-amp off,on; each point an ordinary run directory measured until its "
            "rate is stable, in interleaved rounds; out of memory is a result. Writes sweep.csv and "
            "sweep.json (best point, best under --p99-budget-ms, the knee) into one sweep directory.",
            add_sweep_arguments,
            sweep_command,
        ),
        (
            "capacity",
            "how many cameras of a clip one model serves within a p99 latency budget",
            "Replays the clip as N cameras (--source-fps each, dynamic batching across them) and searches N "
            "by doubling, then bisection, for the most served with the p99 (--percentile) latency within "
            "--p99-budget-ms and at most --max-drop-pct of frames dropped; each trial an ordinary run "
            "directory measured until its verdict is known with confidence. Writes capacity.csv and "
            "capacity.json (the answer, every trial, the decode cost and what bounds the answer).",
            add_capacity_arguments,
            capacity_command,
        ),
    ):
        command = commands.add_parser(name, help=summary, description=description)
        add_arguments(command)
        command.set_defaults(handler=handler)
    models_parser = commands.add_parser("models", help="list the model names framescope runs")
    models_parser.add_argument("--task", choices=("classification", "detection", "segmentation"))
    models_parser.add_argument(
        "--split-points", metavar="MODEL", help="list the layers MODEL can be split before (--split-point)"
    )
    models_parser.set_defaults(handler=models_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # a misspelt flag: said by the command's own parser (with the flag meant, and its usage)
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = commands.choices.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="framescope: %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args.handler(args))
    except FramescopeError as exc:
        print(f"framescope: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("framescope: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("framescope: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:  # a bug: keep its traceback, but never a password from a URL in it
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
