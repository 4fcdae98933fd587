"""Choosing the async pipeline's thread plan by measuring it.

Whether the model should get every core while the producer thread decodes beside it, or leave the producer a
core of its own, has no rule that holds: on a 2-core machine resnet50 ran twice as fast with both cores (the
producer's short bursts cost it little), while an OpenMP team sharing a core with a thread that is busy all
the time can slow down severalfold. So right after the warm-up steps the async pipeline tries each candidate
plan for a few steps, in interleaved rounds (A B B A, so that a drift of the machine hits both alike), and
keeps the faster. The trial steps are recorded like warm-up steps (``warmup=1``, with the ``torch_threads``
they ran with) and left out of the steady-state summary; the evidence goes into ``summary.threads.trial``.

A plan's rate is the rate of the slower side of the pipeline under that plan: per frame, the model side's busy
time (its step time less the wait for input) and the producer's busy time for batches it *started* under the
plan (batches made earlier, already waiting in the queue, would flatter the new plan).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

STEPS_PER_WINDOW = 2
ROUNDS = 2


@dataclass
class _Measured:
    model_s: list[float] = field(default_factory=list)
    """Per frame: the model side's busy seconds, one value per trial step."""
    producer_s: list[float] = field(default_factory=list)
    """Per frame: the producer's busy seconds, one value per batch started under this plan."""

    def seconds_per_frame(self) -> float | None:
        sides = [statistics.median(v) for v in (self.model_s, self.producer_s) if v]
        return max(sides) if sides else None


class ThreadTrial:
    """Interleaved windows of ``STEPS_PER_WINDOW`` steps per candidate torch thread count, ``ROUNDS`` rounds;
    :meth:`decide` sets the faster plan. ``set_threads`` is injectable for tests."""

    def __init__(
        self,
        candidates: list[int],
        *,
        rounds: int = ROUNDS,
        steps_per_window: int = STEPS_PER_WINDOW,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ) -> None:
        if len(candidates) < 2:
            raise ValueError(f"{candidates = } should name at least two thread counts to compare.")
        self.candidates = list(candidates)
        self.set_threads = set_threads
        self.schedule: list[int] = []
        for round_index in range(rounds):
            order = self.candidates if round_index % 2 == 0 else self.candidates[::-1]
            for threads in order:
                self.schedule += [threads] * steps_per_window
        self.measured = {threads: _Measured() for threads in self.candidates}
        self.current: int | None = None
        self.chosen: int | None = None
        self.first_step: int | None = None
        self.steps_run = 0

    @property
    def steps(self) -> int:
        return len(self.schedule)

    def begin_step(self, step: int, index: int) -> int:
        """Switch to the plan of trial step ``index`` (the run's step ``step``); returns its thread count."""
        if self.first_step is None:
            self.first_step = step
        threads = self.schedule[index]
        if threads != self.current:
            self.set_threads(threads)
            self.current = threads
        return threads

    def record_model(self, threads: int, busy_s: float, frames: int) -> None:
        """A trial step that ran on ``threads``: the model side was busy ``busy_s`` for ``frames``."""
        self.steps_run += 1
        if frames and threads in self.measured:
            self.measured[threads].model_s.append(busy_s / frames)

    def record_producer(self, threads: int | None, busy_s: float, frames: int) -> None:
        """A batch the producer started while ``threads`` was the plan (None: before the trial)."""
        if frames and threads in self.measured:
            self.measured[threads].producer_s.append(busy_s / frames)

    def rates(self) -> dict[int, float | None]:
        """Frames per second each plan sustains, as measured (None where nothing was)."""
        rates: dict[int, float | None] = {}
        for threads, measured in self.measured.items():
            seconds = measured.seconds_per_frame()
            rates[threads] = 1.0 / seconds if seconds else None
        return rates

    def decide(self) -> int:
        """Keep the faster plan (the first candidate where nothing could be compared) and switch to it."""
        rates = {t: r for t, r in self.rates().items() if r is not None}
        self.chosen = max(rates, key=lambda t: rates[t]) if len(rates) == len(self.candidates) else None
        if self.chosen is None:
            self.chosen = self.candidates[-1]
        if self.chosen != self.current:
            self.set_threads(self.chosen)
            self.current = self.chosen
        return self.chosen

    @property
    def complete(self) -> bool:
        return self.steps_run == self.steps

    def evidence(self) -> dict[str, Any]:
        """What ``summary.threads.trial`` records."""
        rates = self.rates()
        return {
            "candidates": [
                {
                    "torch_threads": threads,
                    "fps": rates[threads],
                    "model_ms_per_frame": _median_ms(measured.model_s),
                    "producer_ms_per_frame": _median_ms(measured.producer_s),
                    "model_steps": len(measured.model_s),
                    "producer_batches": len(measured.producer_s),
                }
                for threads, measured in self.measured.items()
            ],
            "chosen": self.chosen,
            "first_step": self.first_step,
            "steps": self.steps_run,
            "complete": self.complete,
        }

    def note(self) -> str:
        """One sentence for the run's record."""
        rates = self.rates()
        measured = ", ".join(
            f"{t} torch thread{'s' if t > 1 else ''} {rates[t]:.1f} FPS" if rates[t] else f"{t}: not measured"
            for t in self.candidates
        )
        first = self.first_step or 0
        where = f"steps {first}-{first + self.steps_run - 1}"
        if not self.complete:
            where += f", cut short after {self.steps_run} of {self.steps} steps"
        return f"async thread plan measured ({where}): {measured}; kept {self.chosen}"


def _median_ms(values: list[float]) -> float | None:
    return 1000.0 * statistics.median(values) if values else None


def trial_candidates(cores: int, producer_threads: int) -> list[int]:
    """The plans worth comparing: the model leaving the producer its own cores, or taking every core."""
    strict = max(1, cores - producer_threads)
    return [strict, cores] if strict != cores else []


def trial_fits(expected_steps: int | None, warmup_steps: int, trial_steps: int) -> bool:
    """Whether a run is long enough to spend ``trial_steps`` on measuring: at least as many steady steps must
    be left after it (an endless input always is)."""
    return expected_steps is None or expected_steps - warmup_steps >= 2 * trial_steps
