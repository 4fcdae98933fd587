"""Command-line flags built from the config dataclasses: each field's :func:`~framescope.config.setting`
gives its option strings, help text and group, and its annotation the value type and choices."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import Any, TypeVar

from framescope.config import FlatSetting, flat_settings

_C = TypeVar("_C")


def shown_default(setting: FlatSetting) -> str:
    """The default as ``--help`` shows it: ``required``, ``on``/``off``, ``none``, the value, or the
    setting's ``default_text``."""
    if setting.required:
        return "required"
    if setting.spec.default_text is not None:
        return setting.spec.default_text
    if setting.default is None:
        return "none"
    if isinstance(setting.default, bool):
        return "on" if setting.default else "off"
    return str(setting.default)


def _value_arguments(setting: FlatSetting) -> dict[str, Any]:
    """argparse's action, type, choices and metavar for ``setting``, from its annotation."""
    if setting.type is bool:
        if setting.default is not False:
            raise TypeError(
                f"{setting.spec.flag}: a boolean flag turns a setting on, so its default must be False"
            )
        return {"action": "store_true"}
    arguments: dict[str, Any] = {}
    if setting.type == str | list[str]:
        # given once it stays one string (the merged config turns a one-item list back into it)
        arguments["action"] = "append"
    elif setting.choices is not None:
        arguments["choices"] = setting.choices
    elif setting.type in (int, float):
        arguments["type"] = setting.type
    elif setting.type is not str:
        raise TypeError(f"{setting.spec.flag}: no command-line form for {setting.type!r}")
    if setting.spec.metavar is not None:
        arguments["metavar"] = setting.spec.metavar
    return arguments


def add_setting_arguments(
    parser: argparse.ArgumentParser,
    kind: type[Any],
    *,
    required: bool = True,
    group: str | None = None,
    skip: Collection[str] = (),
) -> None:
    """Add a flag for every setting of the config class ``kind`` that has one.

    Flags default to ``argparse.SUPPRESS``: a flag the user did not give is absent from the namespace, so
    the dataclass supplies the default. ``required``: whether a setting without a default is a required
    flag; False where something else may supply it (``run --config``), and ``--help`` then says
    ``(default: required)``. ``group``: the help group of settings that name none (None: the parser's own).
    ``skip``: flat names left out, for a command that gives those settings another form (``sweep``'s lists).
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in flat_settings(kind):
        spec = setting.spec
        if spec.flag is None or setting.name in skip:
            continue
        target: argparse._ActionsContainer = parser
        title = spec.group or group
        if title is not None:
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            target = groups[title]
        text = spec.help.replace("%", "%%")  # argparse formats help texts with %
        if required and setting.required:
            shown: dict[str, Any] = {"required": True, "help": text}
        else:
            shown = {"default": argparse.SUPPRESS, "help": f"{text} (default: {shown_default(setting)})"}
        target.add_argument(*spec.options, dest=setting.name, **shown, **_value_arguments(setting))


def given_settings(args: argparse.Namespace, kind: type[Any]) -> dict[str, Any]:
    """The settings of ``kind`` given on the command line, by flat name."""
    values = vars(args)
    return {s.name: values[s.name] for s in flat_settings(kind) if s.name in values}


def config_from_flags(kind: type[_C], args: argparse.Namespace) -> _C:
    """The section-less config class ``kind`` built from the flags given; the rest keep the dataclass's
    defaults. (:class:`~framescope.config.RunConfig` has sections: ``RunConfig.from_flat``.)"""
    paths = {s.name: s.path for s in flat_settings(kind)}
    if any(len(path) != 1 for path in paths.values()):
        raise TypeError(f"{kind.__name__} has sections; build it with RunConfig.from_flat")
    return kind(**{paths[name][0]: value for name, value in given_settings(args, kind).items()})
