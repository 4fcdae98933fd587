"""The README is part of the interface: every flag and every CSV column a user meets is documented there."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from framescope.cli import build_parser
from framescope.config import (
    AnnotateConfig,
    ExtractConfig,
    FlatSetting,
    RunConfig,
    flat_defaults,
    flat_settings,
)
from framescope.records import COLUMNS

README = (Path(__file__).parent.parent / "README.md").read_text()

COMMANDS: dict[str, tuple[type[Any], str]] = {
    "run": (RunConfig, "## `framescope run`"),
    "extract-frames": (ExtractConfig, "## Frame extraction: `framescope extract-frames`"),
    "annotate": (AnnotateConfig, "## Image annotation: `framescope annotate`"),
}
"""Each command: the config class its flags come from, and the heading of its README section."""


def command_parser(command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def command_options(command: str) -> list[str]:
    """Every option string of ``framescope COMMAND``, from the parser the command really uses."""
    return [
        option
        for action in command_parser(command)._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    ]


def flag_rows(command: str) -> list[tuple[list[str], str]]:
    """The rows of the flag tables in the command's README section: (the flags named in the first cell,
    the last cell: the default)."""
    section = README.split(COMMANDS[command][1], 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `-"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            flags = [f for token in re.findall(r"`(-[^` ]+)", cells[0]) for f in token.split("/")]
            rows.append((flags, cells[-1]))
    return rows


@pytest.mark.parametrize("column", COLUMNS)
def test_every_csv_column_is_documented(column: str) -> None:
    assert f"`{column}`" in README


@pytest.mark.parametrize("flag", command_options("run"))
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
    return [(command, option) for command in COMMANDS for option in command_options(command)]


@pytest.mark.parametrize(("command", "option"), _subcommand_options())
def test_every_option_of_every_command_is_documented(command: str, option: str) -> None:
    assert f"`{option}" in README or f"/{option}" in README, f"framescope {command} {option}"


@pytest.mark.parametrize("command", COMMANDS)
def test_the_flag_tables_name_only_flags_the_command_has(command: str) -> None:
    options = set(command_options(command))
    documented = [flag for flags, _ in flag_rows(command) for flag in flags]
    assert documented, f"no flag table found for {command}"
    assert [flag for flag in documented if flag not in options] == []


def readme_default_matches(text: str, setting: FlatSetting) -> bool:
    """Whether the README's default column says what the field's default is."""
    text = text.strip("`")
    if setting.required:
        return text == "required"
    if setting.spec.default_text is not None:
        return text == setting.spec.default_text
    default = setting.default
    if isinstance(default, bool):
        return text == ("on" if default else "off")
    if isinstance(default, int | float):
        return float(text) == default
    return text == default


@pytest.mark.parametrize("command", COMMANDS)
def test_the_flag_tables_defaults_match_the_fields(command: str) -> None:
    """Every default the README's tables give for a flag is the field's default, where the row gives one
    default per setting; a default of None is described in words and checked only where the field says how
    ``--help`` shows it."""
    by_option = {option: s for s in flat_settings(COMMANDS[command][0]) for option in s.spec.options}
    checked = 0
    for flags, default_cell in flag_rows(command):
        settings = list(dict.fromkeys(by_option[f] for f in flags if f in by_option))
        defaults = [d.strip() for d in default_cell.split(", ")] if len(settings) > 1 else [default_cell]
        if not settings or len(defaults) != len(settings):
            continue  # --config, or one default for several flags ("the whole video")
        for setting, default in zip(settings, defaults, strict=True):
            if setting.default is None and setting.spec.default_text is None:
                continue
            assert readme_default_matches(default, setting), (command, setting.spec.flag, default)
            checked += 1
    assert checked >= len(flat_settings(COMMANDS[command][0])) // 2
