"""The measured what-if of ``framescope diagnose --tune``, as the run directory's ``tune.json`` holds it:
read tolerantly (it is optional, and written by another command), and laid out as table rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framescope import stats

TUNE_FILE = "tune.json"

TRIAL_HEADER = ("finding", "change", "verdict", "speedup [interval]", "baseline FPS", "candidate FPS", "note")


@dataclass(frozen=True)
class Tune:
    """``tune.json``, or why it could not be read (``problem``)."""

    data: dict[str, Any]
    problem: str | None = None


def read_tune(run_dir: Path) -> Tune | None:
    """The run's tune.json; None when the run has none. A file that is not a JSON object is reported in the
    page rather than failing the whole report."""
    path = run_dir / TUNE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Tune({}, f"{TUNE_FILE} could not be read ({exc}); the what-if results are not shown")
    if not isinstance(data, dict):
        return Tune({}, f"{TUNE_FILE} does not hold a JSON object; the what-if results are not shown")
    return Tune(data)


def speedup_text(speedup: dict[str, Any] | None) -> str:
    if not speedup or speedup.get("value") is None:
        return "–"
    text = f"×{float(speedup['value']):.3f}"
    if speedup.get("low") is not None and speedup.get("high") is not None:
        text += f" [{float(speedup['low']):.3f}, {float(speedup['high']):.3f}]"
    return text


def fps_text(samples: list[float] | None) -> str:
    """The median of a trial's FPS samples, and how many there were."""
    if not samples:
        return "–"
    return f"{stats.median(samples):.1f} (median of {len(samples)})"


def overrides_text(overrides: dict[str, Any] | None, flags: dict[str, str]) -> str:
    """Flat settings as the flags that set them (``--torch-threads 1``, a switch alone: ``--use-amp``); a
    setting no flag says (unknown, switched off, back to its default) as ``name=value``."""
    if not overrides:
        return "–"
    parts = []
    for name, value in overrides.items():
        flag = flags.get(name)
        if flag is None or value is None or value is False:
            parts.append(f"{name}={value}")
        else:
            parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def trial_rows(tune: dict[str, Any], flags: dict[str, str]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for trial in tune.get("trials") or []:
        rows.append(
            (
                str(trial.get("finding", "–")),
                str(trial.get("flags") or overrides_text(trial.get("overrides"), flags)),
                str(trial.get("verdict", "–")),
                speedup_text(trial.get("speedup")),
                fps_text(trial.get("baseline_fps")),
                fps_text(trial.get("candidate_fps")),
                str(trial.get("error") or ""),
            )
        )
    return rows


def tune_rows(tune: dict[str, Any], flags: dict[str, str]) -> list[tuple[str, str]]:
    """The tune as a whole: the command measured, the recommended command, and its speedup."""
    rows = []
    if tune.get("original_command"):
        rows.append(("measured command", str(tune["original_command"])))
    if tune.get("speedup"):
        rows.append(("recommended", str(tune.get("command") or "")))
        rows.append(("changes", overrides_text(tune.get("overrides"), flags)))
        rows.append(("speedup", speedup_text(tune["speedup"])))
    else:
        rows.append(("recommended", "no change: none of the fixes measured faster"))
    if tune.get("rounds"):
        rows.append(("rounds", f"{tune['rounds']} interleaved rounds per trial"))
    rows.extend(("note", str(note)) for note in tune.get("notes") or [])
    if tune.get("interrupted"):
        rows.append(("interrupted", "the measurement was stopped early: trials after that are missing"))
    return rows
