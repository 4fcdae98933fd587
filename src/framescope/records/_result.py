"""A run read back from its directory: the unit every report, diagnosis and comparison works on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from framescope.errors import FramescopeError
from framescope.records._schema import COLUMNS
from framescope.records._summary import RUNNING, build_summary
from framescope.records._writer import CONFIG_FILE, SUMMARY_FILE, SYSTEM_FILE

_REQUIRED = object()


@dataclass
class RunResult:
    """One run: where it lives, how it was configured, the machine, the per-batch rows and the summary."""

    run_dir: Path
    config: dict[str, Any]
    system: dict[str, Any]
    rows: pd.DataFrame
    summary: dict[str, Any]
    csv_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def fps(self) -> float | None:
        """Steady-state frames per second."""
        value = self.summary.get("steady_fps")
        return float(value) if value is not None else None


def read_rows(csv_path: Path) -> pd.DataFrame:
    """The CSV as a DataFrame; a last line cut short by a killed process is dropped."""
    rows = pd.read_csv(csv_path)
    if not rows.empty and rows.iloc[-1][["total_step_latency_ms", "frames"]].isna().any():
        rows = rows.iloc[:-1]
    for column in COLUMNS:
        if column not in rows:
            rows[column] = pd.NA
    return rows


def _read(path: Path, parse: Callable[[Path], Any], missing: Any = _REQUIRED) -> Any:
    """``parse(path)``, or ``missing`` when the file is not there; a file that cannot be read or parsed is one
    line naming it, not a traceback."""
    if missing is not _REQUIRED and not path.exists():
        return missing
    try:
        return parse(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, pd.errors.ParserError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FramescopeError(
            f"{path} could not be read ({reason}); the run directory is damaged: run the job again."
        ) from None


def load_listing(path: str | os.PathLike[str], name: str, kind: str, key: str) -> dict[str, Any]:
    """The JSON file ``name`` of a ``kind`` directory (a sweep's sweep.json, a capacity search's
    capacity.json), with ``{kind}_dir`` set to where the directory is now; a missing or damaged file, or one
    without its ``key`` list, is one line naming it."""
    directory = Path(path)
    file = directory / name
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise FramescopeError(
            f"{file} could not be read ({reason}); is {str(directory)!r} a whole {kind} directory?"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise FramescopeError(
            f"{file} holds no {key}; the {kind} directory is damaged: run the {kind} again."
        )
    data[f"{kind}_dir"] = str(directory)
    return data


def load_run(path: str | os.PathLike[str]) -> RunResult:
    """Read a run directory written by ``framescope run``.

    A run that was killed has no ``summary.json``; its summary is recomputed from the rows on disk and marked
    ``status: incomplete``.
    """
    run_dir = Path(path)
    if not run_dir.exists():
        raise FramescopeError(
            f"run directory {str(run_dir)!r} does not exist; pass a directory made by framescope run."
        )
    if not run_dir.is_dir():
        raise FramescopeError(
            f"{str(run_dir)!r} is a file, not a run directory; pass the directory framescope run made."
        )
    csvs = sorted(run_dir.glob("M_*_P_*_metrics.csv"))
    if not csvs:
        raise FramescopeError(
            f"{str(run_dir)!r} holds no M_*_P_*_metrics.csv; is it a framescope run directory?"
        )
    rows = _read(csvs[0], read_rows)
    config = _read(run_dir / CONFIG_FILE, lambda p: yaml.safe_load(p.read_text()), {})
    system = _read(run_dir / SYSTEM_FILE, lambda p: json.loads(p.read_text()), {})
    summary = _read(run_dir / SUMMARY_FILE, lambda p: json.loads(p.read_text()), None)
    for name, value in ((CONFIG_FILE, config), (SYSTEM_FILE, system), (SUMMARY_FILE, summary)):
        if value is not None and not isinstance(value, dict):
            raise FramescopeError(
                f"{run_dir / name} does not hold a mapping; the run directory is damaged: run the job again."
            )
    if summary is None or summary.get("status") == RUNNING:
        # killed: summarised from its rows, with what it knew when it started (its pipeline above all:
        # an async run's pace and overlap are not a sync run's), or failing that its config
        context = summary or {
            "pipeline": (config or {}).get("pipeline"),
            "batch_size": (config or {}).get("batch_size"),
        }
        summary = build_summary(
            rows,
            context,
            status="incomplete",
            facts={"note": "the run was killed before it ended; summary recomputed from the rows on disk"},
        )
    return RunResult(
        run_dir=run_dir, config=config or {}, system=system, rows=rows, summary=summary, csv_path=csvs[0]
    )
