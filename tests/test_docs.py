"""The README is part of the interface: every flag and every CSV column a user meets is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framescope.cli._run_cmd import MORE_FLAGS, SEED_FLAGS
from framescope.config import flat_defaults
from framescope.records import COLUMNS

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("column", COLUMNS)
def test_every_csv_column_is_documented(column: str) -> None:
    assert f"`{column}`" in README


@pytest.mark.parametrize(
    "flag", [f for options, _, _ in SEED_FLAGS + MORE_FLAGS for f in options] + ["--config"]
)
def test_every_run_flag_is_documented(flag: str) -> None:
    assert f"`{flag}" in README


def test_quick_start_is_two_commands() -> None:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_documented_defaults_match_the_code() -> None:
    defaults = flat_defaults()
    run_section = README.split("## `framescope run`", 1)[1].split("\n### ", 1)[0]  # the flag tables
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `(--[a-z-]+)[^|]*\|[^|]*\| ([^|]*)\|$", run_section, re.M)
    }
    assert rows["--batch-size"] == str(defaults["batch_size"])
    assert rows["--prep-level"] == defaults["prep_level"]
    assert rows["--decoder"] == defaults["decoder"]
    assert rows["--warmup-steps"] == str(defaults["warmup_steps"])
    assert rows["--output-dir"] == defaults["output_dir"]
    assert rows["--weights"] == defaults["weights"]


def _subcommand_options() -> list[tuple[str, str]]:
    import argparse

    from framescope.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (name, option)
        for name, sub in subparsers.choices.items()
        if name in ("run", "extract-frames", "annotate")
        for action in sub._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    ]


@pytest.mark.parametrize(("command", "option"), _subcommand_options())
def test_every_option_of_every_command_is_documented(command: str, option: str) -> None:
    assert f"`{option}" in README or f"/{option}" in README, f"framescope {command} {option}"
