"""``framescope run``: the seed worker's command line, every seed flag kept with its meaning."""

from __future__ import annotations

import argparse
import sys

from framescope.cli._flags import add_setting_arguments, given_settings
from framescope.config import RunConfig, flat_settings
from framescope.errors import ConfigError


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, then a flag for every setting of :class:`RunConfig`, in field order within two help
    groups: the seed worker's flags (first, as ``--model-name`` is the first setting), then the rest."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML run config (the shape of a run's config.yaml); flags given as well override it",
    )
    add_setting_arguments(parser, RunConfig, required=False, group="more")
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=False,
        help="print every resolved setting and the whole system table at the start (by default: the settings "
        "that differ from the defaults)",
    )
    after = parser.add_argument_group("after the run")
    after.add_argument(
        "--tune",
        action="store_true",
        default=False,
        help="run the job again with each flag fix the diagnosis proposes, interleaved with the original, "
        "keep what measurably helps, and print the best command (writes tune.json into the run directory)",
    )
    after.add_argument(
        "--tune-rounds",
        type=int,
        default=3,
        metavar="N",
        help="--tune: interleaved rounds per change, at least 3 (default: 3)",
    )
    after.add_argument(
        "--report",
        action="store_true",
        default=False,
        help="write report.html into the run directory at the end (after --tune, with its results)",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    given = given_settings(args, RunConfig)
    split_model = (given.get("split_point") or "").rpartition(":")[0]
    if split_model and "model_name" not in given and not getattr(args, "config", None):
        given["model_name"] = split_model  # the seed's --split-point resnet50:layer3 names the model
    config_file = getattr(args, "config", None)
    if config_file:
        return RunConfig.from_yaml(config_file).replace(**given)
    for setting in flat_settings(RunConfig):
        if setting.required and setting.name not in given:
            raise ConfigError(
                f"{setting.spec.flag} is required (or pass --config FILE); see framescope run --help."
            )
    return RunConfig.from_flat(**given)


EXAMPLES = (
    ("a video file", "framescope run --model-name resnet18 --input_path video.mp4 --batch-size 8"),
    (
        "a camera (0) or an RTSP stream, frames processed as they arrive",
        "framescope run --model-name mobilenet_v3_small --input_path rtsp://host:8554/cam \\\n"
        "    --pipeline async --deadline-ms 100",
    ),
    (
        "the seed worker's full command (every one of its flags works)",
        "framescope run --model-name resnet50 --input_path video.mp4 --batch-size 16 --prep-level medium \\\n"
        "    --core-bind 4-7 --infer-on-gpu --prep-on-gpu --enable-compile --use-amp --max-steps 500",
    ),
)


def short_usage() -> str:
    """What ``framescope run`` needs, with three examples: printed when it is run bare or a flag is wrong."""
    lines = ["usage: framescope run --model-name MODEL --input_path SOURCE [options]", "", "examples:"]
    for what, command in EXAMPLES:
        lines += [f"  # {what}", *(f"  {line}" for line in command.splitlines())]
    lines += [
        "",
        "framescope models lists the models; framescope run --help every option; framescope doctor checks",
        "what this machine can do.",
    ]
    return "\n".join(lines) + "\n"


def run_command(args: argparse.Namespace) -> int:
    from framescope._run import run
    from framescope.cli._progress import ConsoleObserver

    if not given_settings(args, RunConfig) and not getattr(args, "config", None):
        sys.stderr.write(
            "framescope run: error: nothing to run: pass --model-name and --input_path\n\n" + short_usage()
        )
        return 2
    config = config_from_args(args)
    if config.several_models and (args.tune or args.report):
        flag = "--tune" if args.tune else "--report"
        raise ConfigError(f"{flag} judges one model's run; run it on each model alone (--model-name NAME).")
    if config.multi_model == "all":
        return _run_strategies(config)
    if args.tune:
        from framescope.cli._diagnose_cmd import check_rounds

        check_rounds(args.tune_rounds, "--tune-rounds")
    observer = ConsoleObserver(mode=config.progress, verbose=getattr(args, "verbose", False))
    result = run(config, observer=observer)
    if args.tune and result.status == "complete":
        from framescope.cli._diagnose_cmd import measure

        measure(config, result.summary.get("findings") or [], result.run_dir, rounds=args.tune_rounds,
                console=observer.console)  # fmt: skip
    if args.report:
        from framescope.report import write_report

        path = write_report([result.run_dir], result.run_dir / "report.html")
        observer.console.print(f"report: {path}", markup=False, soft_wrap=True)  # a path, whole
    return 0 if result.status == "complete" else 1


def _run_strategies(config: RunConfig) -> int:
    """``--multi-model all``: each strategy in turn, one line each, then the table side by side."""
    from rich.console import Console

    from framescope._multi import StrategyRun, run_strategies
    from framescope.cli._progress import LOG_WIDTH
    from framescope.report.multi_text import strategies_table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=LOG_WIDTH)  # logs wrap where a run's own output does

    def on_run(run: StrategyRun) -> None:
        if run.result is not None and run.error is None:
            fps = run.result.fps
            console.print(f"{run.strategy}: {fps or 0:.1f} FPS  {run.result.run_dir}", markup=False)
        else:
            console.print(f"{run.strategy}: failed: {run.error}", markup=False)

    parent, runs = run_strategies(config, on_run=on_run)
    console.print(
        strategies_table([(r.strategy, r.result.summary if r.result else None, r.error) for r in runs])
    )
    console.print(f"run directories: {parent}/STRATEGY/round-1", markup=False)
    return 0 if runs and all(r.error is None for r in runs) else 1
