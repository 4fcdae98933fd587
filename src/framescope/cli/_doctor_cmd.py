"""``framescope doctor``: one table of what this machine can do for framescope, a verdict and a fix a line;
exit 0 when the default run will work, 1 otherwise."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from framescope.doctor import Check

STYLES = {"ok": "green", "missing": "dim", "warn": "yellow", "fail": "bold red"}


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON, for scripts")


def checks_table(checks: list[Check]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="framescope doctor", title_justify="left", pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("what was found", overflow="fold", ratio=3)
    table.add_column("fix", overflow="fold", ratio=2)
    for check in checks:
        style = STYLES.get(check.verdict, "")
        needed = "*" if check.needed else ""
        table.add_row(f"{check.name}{needed}", f"[{style}]{check.verdict}[/]", check.detail, check.fix)
    table.caption = "* needed by the default run (make demo); missing: an optional feature not available here"
    table.caption_justify = "left"
    return table


def doctor_command(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    from framescope.doctor import as_json, healthy, run_checks

    out = stream or sys.stdout
    start = time.perf_counter()
    checks = run_checks()
    seconds = time.perf_counter() - start
    if args.json:
        out.write(json.dumps(as_json(checks, seconds), indent=2) + "\n")
        return 0 if healthy(checks) else 1
    console = Console(file=out, highlight=False, width=None if out.isatty() else 100)
    console.print(checks_table(checks))
    broken = [c.name for c in checks if c.needed and c.verdict == "fail"]
    if broken:
        console.print(
            f"[bold red]not ready:[/] {', '.join(broken)} must work for a run; see the fixes above.",
        )
    else:
        console.print(f"ready: the default run will work here (checked in {seconds:.1f} s).", markup=False)
    return 0 if healthy(checks) else 1
