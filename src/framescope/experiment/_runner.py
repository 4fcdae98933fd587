"""Several configurations of one job, measured side by side: the mechanism tune, sweep, compare --rerun,
capacity and launch --solo share.

A base :class:`~framescope.config.RunConfig` and named :class:`Candidate` overrides become ordinary run
directories under one parent (``PARENT/CANDIDATE/round-N``). Rounds are interleaved (A B C, then C B A, ...),
so a drift of a shared machine hits every candidate alike, and each run goes on until its rate is stable
(:class:`StopRule`: consecutive windows within a tolerance, at least some steps, at most some seconds) or its
input ends. A run that fails, or does not fit in memory, is a recorded outcome, not the end of the
experiment; Ctrl-C ends it after the run in progress, and every finished run is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from framescope._observer import RunObserver, StartInfo
from framescope.config import RunConfig
from framescope.errors import FramescopeError, OutOfMemory
from framescope.records import Row, RunResult
from framescope.stats import stable


@dataclass(frozen=True)
class Candidate:
    name: str
    """A directory name: letters, digits, ``-`` and ``_``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Flat settings (as :meth:`RunConfig.replace` takes them) applied to the base."""


@dataclass(frozen=True)
class StopRule:
    """When a run has measured enough: its steady steps' rate stable over the last ``windows`` windows of
    ``window`` steps (within ``tolerance``), after at least ``min_steps`` steps; or ``max_seconds`` of
    stepping passed (building the model and warming up are not counted)."""

    window: int = 5
    windows: int = 3
    tolerance: float = 0.10
    min_steps: int = 20
    max_seconds: float = 60.0

    def watch(self) -> Watch:
        return _Watch(self)


class Watch(RunObserver):
    """What follows one run for a stop rule: an observer that asks the run to stop once the rule has its
    answer, and says afterwards whether it got one (``stable``) and after how many steps."""

    stable: bool = False
    steps: int = 0


class Rule(Protocol):
    """A stop rule: :class:`StopRule` (a stable rate) or another (capacity's tail-latency rule)."""

    def watch(self) -> Watch: ...


class _Watch(Watch):
    """Follows one run's rows and asks it to stop once the rule is met."""

    def __init__(self, rule: StopRule, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule, self.clock = rule, clock
        self.started = clock()
        self.rates: list[float] = []
        self.steps = 0
        self.stable = False

    def on_start(self, info: StartInfo) -> None:
        self.started = self.clock()  # the cap is on measuring: building the model and warming up are not

    def on_step(self, row: Row) -> None:
        self.steps += 1
        if not row.warmup and not row.profiled and row.total_step_latency_ms > 0:
            self.rates.append(row.frames / (row.total_step_latency_ms / 1000.0))

    def stop_requested(self) -> bool:
        rule = self.rule
        if self.steps >= rule.min_steps and stable(
            self.rates, window=rule.window, windows=rule.windows, tolerance=rule.tolerance
        ):
            self.stable = True
            return True
        return self.clock() - self.started >= rule.max_seconds


@dataclass
class Trial:
    """One run of one candidate."""

    candidate: str
    round: int
    status: str
    """``complete``, ``oom``, ``failed`` or ``interrupted``."""
    fps: float | None = None
    """Steady-state frames per second."""
    stable: bool = False
    """Whether it stopped because its stop rule had its answer (a stable rate; else its input ended or the
    time cap came)."""
    steps: int = 0
    run_dir: Path | None = None
    error: str | None = None
    result: RunResult | None = field(default=None, repr=False)


@dataclass
class Outcome:
    """Every trial of one candidate, in round order."""

    candidate: Candidate
    trials: list[Trial] = field(default_factory=list)

    @property
    def fps(self) -> list[float | None]:
        return [trial.fps if trial.status == "complete" else None for trial in self.trials]

    def fps_by_round(self) -> dict[int, float]:
        """The steady-state rate of each round this candidate completed."""
        return {t.round: t.fps for t in self.trials if t.status == "complete" and t.fps}

    @property
    def failed(self) -> Trial | None:
        return next((t for t in self.trials if t.status in ("oom", "failed")), None)


RunFunction = Callable[..., RunResult]


class Experiment:
    """``Experiment(base, candidates, parent=...).run()`` measures every candidate in ``rounds`` interleaved
    rounds and returns their outcomes (the first candidate is conventionally the baseline: no overrides)."""

    def __init__(
        self,
        base: RunConfig,
        candidates: list[Candidate],
        *,
        parent: Path,
        rounds: int = 3,
        stop: Rule | None = None,
        on_trial: Callable[[Trial], None] | None = None,
        run: RunFunction | None = None,
    ) -> None:
        if len({c.name for c in candidates}) != len(candidates):
            raise ValueError("candidate names must differ")
        self.base, self.candidates, self.parent = base, candidates, parent
        self.rounds = rounds
        self.stop: Rule = stop if stop is not None else StopRule()
        self.on_trial = on_trial or (lambda trial: None)
        if run is None:
            from framescope._run import run as run_framescope

            run = run_framescope
        self.run_one = run
        self.interrupted = False
        self.rounds_run = 0
        self._outcomes = {c.name: Outcome(c) for c in candidates}
        self._failed: set[str] = set()
        self._excluded: set[str] = set()

    def config_of(self, candidate: Candidate, round_index: int) -> RunConfig:
        config = self.base.replace(
            **candidate.overrides,
            output_dir=str(self.parent / candidate.name),
            run_name=f"round-{round_index + 1}",
            progress="none",
        )
        return config

    def _measure(self, candidate: Candidate, round_index: int) -> Trial:
        watch = self.stop.watch()
        try:
            result = self.run_one(self.config_of(candidate, round_index), observer=watch)
        except OutOfMemory as exc:
            return Trial(candidate.name, round_index, "oom", error=str(exc))
        except FramescopeError as exc:
            return Trial(candidate.name, round_index, "failed", error=str(exc))
        return Trial(
            candidate.name,
            round_index,
            "complete" if result.status == "complete" else "failed",
            fps=result.fps,
            stable=watch.stable,
            steps=watch.steps,
            run_dir=result.run_dir,
            error=result.summary.get("error"),
            result=result,
        )

    def run(self) -> list[Outcome]:
        """Every candidate, ``rounds`` interleaved rounds."""
        for _ in range(self.rounds):
            if not self._round(self.candidates):
                break
        return self.outcomes()

    def extend(self, names: list[str]) -> list[Outcome]:
        """One more round of the baseline (the first candidate) and the candidates named: for the ones whose
        measurement is not decided yet. Pairs are matched by round, so the others keep theirs."""
        chosen = [c for c in self.candidates[1:] if c.name in names]
        if chosen and not self.interrupted:
            self._round([self.candidates[0], *chosen])
        return self.outcomes()

    def exclude(self, names: Iterable[str]) -> None:
        """Leave the candidates ``names`` out of every run from now on, in this round too (a sweep skips the
        batch sizes larger than one that ran out of memory); their outcomes keep the trials they had."""
        self._excluded.update(names)

    def outcomes(self) -> list[Outcome]:
        return [self._outcomes[c.name] for c in self.candidates]

    def _round(self, candidates: list[Candidate]) -> bool:
        """Run one interleaved round of ``candidates``; False when Ctrl-C stopped it."""
        round_index = self.rounds_run
        self.rounds_run += 1
        order = candidates if round_index % 2 == 0 else candidates[::-1]  # no candidate always runs first
        try:
            for candidate in order:
                if candidate.name in self._failed or candidate.name in self._excluded:
                    continue  # out of memory (or broken) once is enough: later rounds would repeat it
                trial = self._measure(candidate, round_index)
                self._outcomes[candidate.name].trials.append(trial)
                if trial.status in ("oom", "failed"):
                    self._failed.add(candidate.name)
                self.on_trial(trial)
        except KeyboardInterrupt:
            self.interrupted = True  # every finished trial is kept; the caller reports, then stops
            return False
        return True
