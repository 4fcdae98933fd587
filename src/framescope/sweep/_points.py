"""What a sweep measures: the swept settings (axes) read from comma lists, and the points they make, by grid
or one factor at a time, each a named set of overrides of the base config, all validated before any runs."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from framescope.config import FlatSetting, RunConfig, flat_settings, parse_decode_size
from framescope.errors import ConfigError, FramescopeError

SWEEPABLE: tuple[str, ...] = (
    "batch_size",
    "use_amp",
    "enable_compile",
    "pipeline",
    "decoder",
    "decode_size",
    "prep_on_gpu",
    "post_on_gpu",
    "torch_threads",
    "prep_level",
)
"""The settings a sweep may vary, by flat name, in the order points vary them (batch size outermost): how
the job runs, never which model or input it runs."""
SEARCHES = ("grid", "ofat")
SWITCH_WORDS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}
AUTO = "auto"
"""``--torch-threads auto``: one per bound core (the run's default)."""
NATIVE = "native"
"""``--decode-size native``: decode at the input's own size (the run's default)."""


def _settings() -> dict[str, FlatSetting]:
    return {s.name: s for s in flat_settings(RunConfig) if s.name in SWEEPABLE}


def value_text(value: Any, name: str = "") -> str:
    """A swept value of setting ``name`` as the command line writes it: ``on``/``off``, ``8``, and for the
    run's default (None) ``native`` (decode size) or ``auto`` (threads)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return _none_word(name)
    return str(value)


def _none_word(name: str) -> str:
    return NATIVE if name == "decode_size" else AUTO


def parse_value(name: str, text: str) -> Any:
    """One value of the comma list of setting ``name``, typed as the setting is; a value the setting does not
    take is a :class:`ConfigError` naming it and what it takes."""
    setting = _settings()[name]
    flag = setting.spec.flag
    word = text.strip()
    if setting.type is bool:
        if word.lower() not in SWITCH_WORDS:
            raise ConfigError(f"{flag} {word!r}: a switch sweeps off and on; pass e.g. {flag} off,on.")
        return SWITCH_WORDS[word.lower()]
    if setting.choices is not None:
        if word not in setting.choices:
            raise ConfigError(
                f"{flag} {word!r} is not one of {', '.join(setting.choices)}; pass e.g. "
                f"{flag} {','.join(setting.choices)}."
            )
        return word
    if name in ("torch_threads", "decode_size") and word.lower() == _none_word(name):
        return None
    if setting.type is int:
        try:
            number = int(word)
        except ValueError:
            number = 0
        if number <= 0:
            extra = f" or {AUTO}" if name == "torch_threads" else ""
            raise ConfigError(f"{flag} {word!r} should be a positive integer{extra}; pass e.g. {flag} 1,2,4.")
        return number
    try:
        parse_decode_size(word)
    except ConfigError:
        raise ConfigError(
            f"{flag} {word!r} should be WIDTHxHEIGHT, auto or {NATIVE}; pass e.g. {flag} {NATIVE},320x240."
        ) from None
    return word


def parse_list(name: str, text: str) -> list[Any]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` for setting ``name``; an empty list, an empty item or a value given
    twice is a :class:`ConfigError`."""
    flag = _settings()[name].spec.flag
    items = text.split(",")
    if not text.strip() or any(not item.strip() for item in items):
        raise ConfigError(
            f"{flag} {text!r} has an empty value; pass a comma list, e.g. {flag} {_example(name)}."
        )
    values = [parse_value(name, item) for item in items]
    twice = [value_text(v, name) for i, v in enumerate(values) if v in values[:i]]
    if twice:
        raise ConfigError(
            f"{flag} lists {twice[0]} twice; pass each value once, e.g. {flag} {_example(name)}."
        )
    return values


def _example(name: str) -> str:
    setting = _settings()[name]
    if setting.type is bool:
        return "off,on"
    if setting.choices is not None:
        return ",".join(setting.choices)
    return {"batch_size": "1,2,4,8", "torch_threads": "1,2", "decode_size": "native,auto"}[name]


@dataclass(frozen=True)
class Point:
    """One configuration of a sweep: its directory name and the settings it sets."""

    name: str
    overrides: dict[str, Any]


def point_name(overrides: dict[str, Any]) -> str:
    """``batch_size-8_use_amp-on``: readable, and a plain directory name."""
    if not overrides:
        return "base"
    text = "_".join(f"{name}-{value_text(value, name)}" for name, value in overrides.items())
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def expand(axes: dict[str, list[Any]], search: str = "grid") -> list[Point]:
    """The points of ``axes`` ({setting: values}): every combination (``grid``), or the first value of every
    list plus each other value of one setting at a time with the others at their first (``ofat``). Settings
    vary in :data:`SWEEPABLE` order, batch size outermost."""
    if search not in SEARCHES:
        raise ConfigError(f"--search {search!r} is not one of {', '.join(SEARCHES)}; pass --search grid.")
    names = [name for name in SWEEPABLE if name in axes]
    if search == "grid":
        combos = [
            dict(zip(names, values, strict=True)) for values in itertools.product(*(axes[n] for n in names))
        ]
    else:
        first = {name: axes[name][0] for name in names}
        combos = [first]
        for name in names:
            combos += [{**first, name: value} for value in axes[name][1:]]
    return [Point(point_name(combo), combo) for combo in combos]


def point_configs(base: RunConfig, points: list[Point]) -> dict[str, RunConfig]:
    """Every point's config, built and checked (values, cross-setting rules, devices) before any point runs:
    a sweep that would fail at its fifth point fails now, naming the point."""
    from framescope._placement import resolve_devices

    configs: dict[str, RunConfig] = {}
    for point in points:
        try:
            config = base.replace(**point.overrides)
            resolve_devices(config)
        except FramescopeError as exc:
            raise type(exc)(f"point {point.name}: {exc}") from None
        configs[point.name] = config
    return configs
