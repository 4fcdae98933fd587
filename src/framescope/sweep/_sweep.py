"""Running a sweep: every point an ordinary run directory under one sweep directory, measured by the
experiment runner (interleaved rounds, each run until its rate is stable), with sweep.csv and sweep.json
rewritten after every finished run so a sweep stopped any way leaves valid files.

The sweep directory::

    sweep.yaml                      base config, axes, search, rounds, stop rule, p99 budget
    sweep.csv                       one row per point (see README "Sweeps")
    sweep.json                      the same rows, the verdicts, notes, interrupted
    points/POINT/round-N/           ordinary run directories
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framescope.config import RunConfig
from framescope.errors import ConfigError
from framescope.experiment import Candidate, Experiment, StopRule, Trial
from framescope.experiment._runner import RunFunction
from framescope.records import RunWriter
from framescope.sweep._points import Point, expand, point_configs, value_text
from framescope.sweep._table import csv_text, point_row, verdicts

SWEEP_YAML = "sweep.yaml"
SWEEP_CSV = "sweep.csv"
SWEEP_JSON = "sweep.json"
POINTS_DIR = "points"


def free_memory() -> None:
    """What an out-of-memory point held, given back before the next point: Python's garbage, and the CUDA
    caching allocator's unused blocks."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _check(rounds: int, stop: StopRule, budget: float | None) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"--rounds {rounds!r} should be a positive integer; pass e.g. --rounds 3.")
    if stop.min_steps < 1:
        raise ConfigError(f"--min-steps {stop.min_steps} should be at least 1; pass e.g. --min-steps 20.")
    if not stop.max_seconds > 0:
        raise ConfigError(
            f"--max-seconds {stop.max_seconds:g} should be positive; pass e.g. --max-seconds 60."
        )
    if budget is not None and not budget > 0:
        raise ConfigError(f"--p99-budget-ms {budget:g} should be positive; pass e.g. --p99-budget-ms 100.")


class Sweep:
    """``Sweep(base, axes).run()`` measures every point of ``axes`` ({flat setting: values}) for ``base``'s
    job and returns sweep.json's content. ``request_stop()`` (a first Ctrl-C) ends it after the run in
    progress; a KeyboardInterrupt inside a run ends it at once, keeping every finished run."""

    def __init__(
        self,
        base: RunConfig,
        axes: dict[str, list[Any]],
        *,
        search: str = "grid",
        rounds: int = 1,
        stop: StopRule | None = None,
        p99_budget_ms: float | None = None,
        on_trial: Callable[[Trial, dict[str, Any]], None] | None = None,
        run: RunFunction | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not axes:
            raise ConfigError(
                "nothing to sweep: pass a setting with a comma list, e.g. --batch-size 1,2,4,8."
            )
        self.stop = stop if stop is not None else StopRule()
        _check(rounds, self.stop, p99_budget_ms)
        self.axes, self.search, self.rounds, self.budget = axes, search, rounds, p99_budget_ms
        self.points = expand(axes, search)
        # a trace's steps are not steady ones, and each point runs until its rate is stable
        self.base = base.replace(torch_profile=False)
        self.configs = point_configs(self.base, self.points)  # every point checked before any runs
        self.on_trial = on_trial or (lambda trial, row: None)
        self.run_one, self.clock = run, clock
        self.trials: dict[str, list[Trial]] = {p.name: [] for p in self.points}
        self.skipped: dict[str, str] = {}
        self.stop_requested = False
        self.interrupted = False
        self.sweep_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._experiment: Experiment | None = None

    # --- running --------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """End the sweep once the run in progress has finished (the first Ctrl-C)."""
        self.stop_requested = True

    def create(self) -> Path:
        """The sweep directory: ``--output-dir``/``--run-name``, or ``sweep-MODEL-YYYYmmdd-HHMMSS``."""
        name = self.base.run_name or f"sweep-{self.base.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._writer = RunWriter.create(
            Path(self.base.output_dir), name, SWEEP_CSV, unique=self.base.run_name is None
        )
        self.sweep_dir = self._writer.run_dir
        self._writer.write_text(SWEEP_YAML, self._plan_yaml())
        self.write()
        return self.sweep_dir

    def run(self) -> dict[str, Any]:
        if self.sweep_dir is None:
            self.create()
        assert self.sweep_dir is not None
        self._experiment = Experiment(
            self.base,
            [Candidate(point.name, point.overrides) for point in self.points],
            parent=self.sweep_dir / POINTS_DIR,
            rounds=self.rounds,
            stop=self.stop,
            on_trial=self._after,
            run=self.run_one,
        )
        try:
            self._experiment.run()
        finally:
            self.interrupted = self._experiment.interrupted
            report = self.write()
        return report

    def _after(self, trial: Trial) -> None:
        """After each run: an OOM frees memory and skips the larger batch sizes; the files are rewritten."""
        if trial.status == "oom":
            free_memory()
            skipped = self._larger_batches(trial.candidate)
            if skipped and self._experiment is not None:
                self._experiment.exclude(skipped)
        self.trials[trial.candidate].append(trial)
        self.write()
        self.on_trial(trial, self.row(self._point(trial.candidate)))
        if self.stop_requested:
            raise KeyboardInterrupt  # the experiment keeps this trial and ends the sweep

    def _point(self, name: str) -> Point:
        return next(p for p in self.points if p.name == name)

    def _larger_batches(self, name: str) -> list[str]:
        """The points with a larger batch size and every other setting the same as ``name``'s."""
        failed = self._point(name)
        size = failed.overrides.get("batch_size", self.base.batch_size)
        rest = {k: v for k, v in failed.overrides.items() if k != "batch_size"}
        larger = []
        for point in self.points:
            other = {k: v for k, v in point.overrides.items() if k != "batch_size"}
            if (
                other == rest
                and point.overrides.get("batch_size", size) > size
                and point.name not in self.skipped
            ):
                larger.append(point.name)
                self.skipped[point.name] = (
                    f"skipped: {name} (batch size {size}) ran out of memory, so a larger batch would too"
                )
        return larger

    # --- the files --------------------------------------------------------------------------------------

    def row(self, point: Point) -> dict[str, Any]:
        assert self.sweep_dir is not None
        return point_row(
            point, self.trials[point.name], sweep_dir=self.sweep_dir, skipped=self.skipped.get(point.name)
        )

    def rows(self) -> list[dict[str, Any]]:
        """A row for every point that ran or was skipped; points not reached (Ctrl-C) have none."""
        return [self.row(p) for p in self.points if self.trials[p.name] or p.name in self.skipped]

    def report(self) -> dict[str, Any]:
        rows = self.rows()
        overrides = {p.name: p.overrides for p in self.points}
        points = [{**row, "overrides": overrides[row["point"]]} for row in rows]
        done = {row["point"] for row in rows}
        not_run = [p.name for p in self.points if p.name not in done]
        report: dict[str, Any] = {
            "sweep_dir": str(self.sweep_dir),
            "model": self.base.model.name,
            "input": self.base.source.input_path,
            "axes": {name: [value_text(v, name) for v in values] for name, values in self.axes.items()},
            "search": self.search,
            "rounds": self.rounds,
            "stop": dataclasses.asdict(self.stop),
            "p99_budget_ms": self.budget,
            "points": points,
            **verdicts(rows, self.budget),
            "not_run": not_run,
            "interrupted": self.interrupted,
            "notes": self._notes(rows, not_run),
        }
        return report

    def _notes(self, rows: list[dict[str, Any]], not_run: list[str]) -> list[str]:
        notes = []
        for row in rows:
            if row["status"] == "unstable":
                trials = [t for t in self.trials[row["point"]] if t.status == "complete"]
                ended = [t for t in trials if not t.stable]
                capped = sum(bool(t.result and t.result.summary.get("stopped_by_observer")) for t in ended)
                why = (
                    f"the time cap of {self.stop.max_seconds:g} s came first"
                    if capped == len(ended)
                    else "the input ended first"
                    if capped == 0
                    else "the input ended or the time cap came first"
                )
                notes.append(
                    f"{row['point']}: {len(ended)} of {len(trials)} round(s) ended before the rate was "
                    f"stable ({why}); its numbers rest on fewer steps than the stop rule asks for"
                )
            elif row["status"] == "oom" and row["error"] and row["error"].startswith("skipped"):
                notes.append(f"{row['point']}: {row['error']}")
        if not_run:
            notes.append(f"{len(not_run)} point(s) not run (the sweep was stopped): {', '.join(not_run)}")
        return notes

    def write(self) -> dict[str, Any]:
        """sweep.csv and sweep.json as they stand, each replaced atomically."""
        assert self._writer is not None
        report = self.report()
        swept = [name for name in self.points[0].overrides] if self.points else []
        self._writer.write_text(SWEEP_CSV, csv_text(self.rows(), swept))
        self._writer.write_json(SWEEP_JSON, report)
        return report

    def _plan_yaml(self) -> str:
        import yaml

        plan = {
            "base": self.base.to_dict(),
            "axes": {name: list(values) for name, values in self.axes.items()},
            "search": self.search,
            "rounds": self.rounds,
            "stop": dataclasses.asdict(self.stop),
            "p99_budget_ms": self.budget,
            "points": [{"name": p.name, "overrides": p.overrides} for p in self.points],
        }
        return yaml.safe_dump(plan, sort_keys=False)


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` is a sweep directory (it holds sweep.csv)."""
    return Path(path).is_dir() and (Path(path) / SWEEP_CSV).is_file()


def load_sweep(path: str | os.PathLike[str]) -> dict[str, Any]:
    """sweep.json of the sweep directory ``path``, with ``sweep_dir`` set to where it is now; a missing or
    damaged file is one line naming it."""
    from framescope.records._result import load_listing

    return load_listing(path, SWEEP_JSON, "sweep", "points")
