"""``framescope report``: one self-contained HTML file for one run, or a comparison of several."""

from __future__ import annotations

import argparse
from pathlib import Path

from framescope.errors import ConfigError

REPORT_FILE = "report.html"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories made by framescope run (several are compared side by side), or sweep "
        "directories made by framescope sweep",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help=f"the HTML file to write (default for one run: RUN_DIR/{REPORT_FILE}; several need -o)",
    )


def report_command(args: argparse.Namespace) -> int:
    from framescope.report import write_report

    output: Path | None = args.output
    if output is None:
        if len(args.run_dirs) > 1:
            raise ConfigError(
                f"{len(args.run_dirs)} runs make a comparison; pass -o FILE for it, e.g. -o report.html."
            )
        output = args.run_dirs[0] / REPORT_FILE
    path = write_report(args.run_dirs, output)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({len(args.run_dirs)} run(s), {size:.1f} MiB; opens offline in any browser)")
    return 0
