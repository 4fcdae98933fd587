"""What a run tells its observer: the CLI renders it; the Python API ignores it unless given one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framescope.config import RunConfig
from framescope.records import Row, RunResult
from framescope.sources import SourceInfo


@dataclass(slots=True)
class StartInfo:
    """What a run is about to do; handed to observers before the first step."""

    run_dir: Path
    csv_path: Path
    config: RunConfig
    system: dict[str, Any]
    source: SourceInfo
    model: dict[str, Any]
    threads: dict[str, Any]
    """The thread plan as recorded in the summary: ``cores``, ``torch``, ``decode``, ..."""
    timing_method: str
    expected_steps: int | None


class RunObserver:
    """Receives a run's progress; the CLI renders it, the Python API ignores it by default.

    ``on_step`` and ``stop_requested`` run in the loop's own thread, between steps: keep them quick. A live
    input's frames go on arriving meanwhile, and anything that holds the GIL (importing a large module, a
    long pure-Python loop) also stalls the readers' threads: a capacity trial that imported SciPy in its first
    check saw its readers burst and drop frames. Prepare in ``__init__`` or ``on_start`` instead."""

    def on_start(self, info: StartInfo) -> None:
        """Called once, after set-up and before the first step."""

    def on_step(self, row: Row) -> None:
        """Called after each step's row is on disk."""

    def on_warning(self, message: str) -> None:
        """Called for anything that makes the numbers less trustworthy."""

    def on_finish(self, result: RunResult) -> None:
        """Called once the summary is written (also for interrupted and failed runs)."""

    def stop_requested(self) -> bool:
        """Asked after each step: True ends the run there, complete (its summary says it was stopped)."""
        return False
