"""Choosing the async pipeline's thread plan by measuring it.

Whether the model should get every core while the producer thread decodes beside it, or leave the producer a
core of its own, has no rule that holds: on a 2-core machine resnet50 ran twice as fast with both cores (the
producer's short bursts cost it little), while an OpenMP team sharing a core with a thread that is busy all
the time can slow down severalfold. So right after the warm-up steps the async pipeline tries each candidate
plan for a few steps, in interleaved rounds (A B, B A, ..., so that a drift of the machine hits both alike),
and keeps the faster. The trial is sequential: after ``min_rounds`` rounds it stops as soon as the per-round
ratios show one plan faster (a Student-t interval on their logarithms that excludes 1), and otherwise runs
another round, up to ``max_rounds``, then keeps the faster over all the steps each plan ran (see
:meth:`ThreadTrial.decide`). A plain difference (resnet50's 2x) is settled in the first rounds; a close one
gets the steps it needs, where a fixed 8 steps kept the slower plan of mobilenet_v3_small on 1080p in 2 of 5
runs. The trial steps are recorded like warm-up steps
(``warmup=1``, with the ``torch_threads`` they ran with) and left out of the steady-state summary; the
evidence goes into ``summary.threads.trial``.

A plan's rate (in a window, or over all its windows) is the rate of the slower side of the pipeline: per
frame, the model side's median busy time (its step time less the wait for input) and the producer's for
batches it *started* in the plan's windows (batches made earlier, already waiting in the queue, would
flatter the new plan). The producer reports a batch as soon as it has made it (from its own thread), so a
round's last window is measured when the round ends.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from framescope.stats import Ratio, paired_ratio

STEPS_PER_WINDOW = 2
MIN_ROUNDS = 2
MAX_ROUNDS = 6
CONFIDENCE = 0.95


@dataclass
class _Window:
    """``steps_per_window`` consecutive trial steps on one thread count."""

    threads: int
    round: int
    model_s: list[float] = field(default_factory=list)
    """Per frame: the model side's busy seconds, one value per step."""
    producer_s: list[float] = field(default_factory=list)
    """Per frame: the producer's busy seconds, one value per batch started in this window."""


def _seconds_per_frame(model_s: list[float], producer_s: list[float]) -> float | None:
    """The slower side's median seconds per frame; None before the model side ran."""
    if not model_s:
        return None
    return max(statistics.median(v) for v in (model_s, producer_s) if v)


class ThreadTrial:
    """Interleaved windows of ``steps_per_window`` steps per candidate torch thread count, round after round
    until one is shown faster (``min_rounds`` to ``max_rounds``); :meth:`decide` sets the faster plan.
    ``set_threads`` is injectable for tests. The producer's :meth:`record_producer` may come from another
    thread."""

    def __init__(
        self,
        candidates: list[int],
        *,
        min_rounds: int = MIN_ROUNDS,
        max_rounds: int = MAX_ROUNDS,
        steps_per_window: int = STEPS_PER_WINDOW,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ) -> None:
        if len(candidates) < 2:
            raise ValueError(f"{candidates = } should name at least two thread counts to compare.")
        if not 1 <= min_rounds <= max_rounds:
            raise ValueError(f"{min_rounds = } and {max_rounds = } should satisfy 1 <= min <= max.")
        import scipy.stats  # noqa: F401  (imported now: a round's verdict must not pause the run to load it)

        self.candidates = list(candidates)
        self.min_rounds, self.max_rounds = min_rounds, max_rounds
        self.steps_per_window = steps_per_window
        self.set_threads = set_threads
        self.windows: list[_Window] = []
        self.schedule: list[int] = []
        """The thread count of each trial step planned so far (a round is added while undecided)."""
        for _ in range(min_rounds):
            self._add_round()
        self._lock = threading.Lock()
        self.current: int | None = None
        self.chosen: int | None = None
        self.first_step: int | None = None
        self.steps_run = 0

    def _add_round(self) -> None:
        round_index = len(self.windows) // len(self.candidates)
        order = self.candidates if round_index % 2 == 0 else self.candidates[::-1]
        for threads in order:
            self.windows.append(_Window(threads, round_index))
            self.schedule += [threads] * self.steps_per_window

    @property
    def steps(self) -> int:
        """Trial steps planned so far."""
        return len(self.schedule)

    @property
    def rounds(self) -> int:
        """Rounds whose every step ran."""
        return self.steps_run // (len(self.candidates) * self.steps_per_window)

    def begin_step(self, step: int, index: int) -> int:
        """Switch to the plan of trial step ``index`` (the run's step ``step``); returns the tag the producer
        stamps on the batches it starts now (the window's number)."""
        if self.first_step is None:
            self.first_step = step
        threads = self.schedule[index]
        if threads != self.current:
            self.set_threads(threads)
            self.current = threads
        return index // self.steps_per_window

    def record_model(self, index: int, busy_s: float, frames: int) -> None:
        """Trial step ``index`` ran: the model side was busy ``busy_s`` for ``frames``."""
        self.steps_run = max(self.steps_run, index + 1)
        if frames:
            with self._lock:
                self.windows[index // self.steps_per_window].model_s.append(busy_s / frames)

    def record_producer(self, tag: Any, busy_s: float, frames: int) -> None:
        """The producer made a batch it started under ``tag`` (a window's number; None: before the trial)."""
        if frames and isinstance(tag, int) and 0 <= tag < len(self.windows) and self.chosen is None:
            with self._lock:
                self.windows[tag].producer_s.append(busy_s / frames)

    def end_step(self, index: int) -> bool:
        """After trial step ``index``: at the end of the schedule, decide, or plan one more round when the
        rounds so far leave the plans apart by less than they can show. Returns whether the trial is over."""
        if index != self.steps - 1:
            return False
        comparison = self.comparison()
        rounds = self.rounds
        shown = comparison is not None and comparison.excludes(1.0)
        if rounds < self.max_rounds and not shown:
            self._add_round()
            return False
        self.decide()
        return True

    def _round_rates(self) -> list[dict[int, float]]:
        """Per complete round: each plan's frames per second in its window."""
        with self._lock:
            per_round: dict[int, dict[int, float]] = {}
            for window in self.windows:
                seconds = _seconds_per_frame(window.model_s, window.producer_s)
                if seconds:
                    per_round.setdefault(window.round, {})[window.threads] = 1.0 / seconds
        return [rates for rates in per_round.values() if len(rates) == len(self.candidates)]

    def comparison(self) -> Ratio | None:
        """With two plans: the second's rate over the first's, from the rounds' paired windows (None with
        more plans or no complete round). It decides when the trial can stop, not which plan is kept."""
        if len(self.candidates) != 2:
            return None
        rounds = self._round_rates()
        if not rounds:
            return None
        first, second = self.candidates
        return paired_ratio([r[first] for r in rounds], [r[second] for r in rounds], confidence=CONFIDENCE)

    def _pooled(self, threads: int) -> tuple[list[float], list[float]]:
        """Plan ``threads``'s windows together: (model seconds per frame, producer seconds per frame)."""
        with self._lock:
            windows = [w for w in self.windows if w.threads == threads]
            return [v for w in windows for v in w.model_s], [v for w in windows for v in w.producer_s]

    def rates(self) -> dict[int, float | None]:
        """Frames per second each plan sustains, from every step it ran (None where nothing was)."""
        rates: dict[int, float | None] = {}
        for threads in self.candidates:
            seconds = _seconds_per_frame(*self._pooled(threads))
            rates[threads] = 1.0 / seconds if seconds else None
        return rates

    def decide(self) -> int:
        """Keep the faster plan and switch to it: the one the rounds show faster where they show one, else
        the faster by the rates over all its steps (the last candidate, every core, where nothing could be
        compared). Without a verdict the pooled medians choose rather than the rounds' centre: a round's
        windows hold two steps and a batch or two of the producer's, so one slow step sways a round, and on
        1080p mobilenet_v3_small the rounds' centre picked the slower plan where the pooled rates did not."""
        comparison = self.comparison()
        rates = {t: r for t, r in self.rates().items() if r is not None}
        if comparison is not None and comparison.excludes(1.0):
            self.chosen = self.candidates[1] if comparison.value > 1 else self.candidates[0]
        elif len(rates) == len(self.candidates):
            self.chosen = max(rates, key=lambda t: rates[t])
        else:
            self.chosen = self.candidates[-1]
        if self.chosen != self.current:
            self.set_threads(self.chosen)
            self.current = self.chosen
        return self.chosen

    @property
    def complete(self) -> bool:
        """Whether the trial ran every step it planned (a run can end inside it)."""
        return self.steps_run == self.steps

    def evidence(self) -> dict[str, Any]:
        """What ``summary.threads.trial`` records."""
        rates = self.rates()
        candidates = []
        for threads in self.candidates:
            model, producer = self._pooled(threads)
            candidates.append(
                {
                    "torch_threads": threads,
                    "fps": rates[threads],
                    "model_ms_per_frame": _median_ms(model),
                    "producer_ms_per_frame": _median_ms(producer),
                    "model_steps": len(model),
                    "producer_batches": len(producer),
                }
            )
        comparison = self.comparison()
        with self._lock:
            windows = [
                {
                    "round": w.round,
                    "torch_threads": w.threads,
                    "model_ms_per_frame": [1000.0 * v for v in w.model_s],
                    "producer_ms_per_frame": [1000.0 * v for v in w.producer_s],
                }
                for w in self.windows
                if w.model_s
            ]
        return {
            "candidates": candidates,
            "windows": windows,
            "chosen": self.chosen,
            "first_step": self.first_step,
            "steps": self.steps_run,
            "rounds": self.rounds,
            "max_rounds": self.max_rounds,
            "ratio": None
            if comparison is None or comparison.high == float("inf")
            else {"value": comparison.value, "low": comparison.low, "high": comparison.high},
            "shown": comparison is not None and comparison.excludes(1.0),
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
        rounds = self.rounds
        where = f"steps {first}-{first + self.steps_run - 1}, {rounds} round{'s' if rounds != 1 else ''}"
        if not self.complete:
            where += f", cut short after {self.steps_run} of {self.steps} steps"
        comparison = self.comparison()
        verdict = f"; kept {self.chosen}"
        if comparison is not None and comparison.high != float("inf") and self.chosen is not None:
            first, second = self.candidates
            if self.chosen == second:
                other, by, low, high = first, comparison.value, comparison.low, comparison.high
            else:
                other, by = second, 1.0 / comparison.value
                low, high = 1.0 / comparison.high, 1.0 / comparison.low
            verdict = f"; {self.chosen} over {other} per round {by:.2f}x (95 % CI {low:.2f}-{high:.2f}x)"
            if comparison.excludes(1.0):
                verdict += f": kept {self.chosen}"
            else:
                verdict += f", not shown in {rounds} rounds: kept {self.chosen}, the faster estimate"
        return f"async thread plan measured ({where}): {measured}{verdict}"


def _median_ms(values: list[float]) -> float | None:
    return 1000.0 * statistics.median(values) if values else None


def trial_candidates(cores: int, producer_threads: int) -> list[int]:
    """The plans worth comparing: the model leaving the producer its own cores, or taking every core."""
    strict = max(1, cores - producer_threads)
    return [strict, cores] if strict != cores else []


def trial_rounds(expected_steps: int | None, warmup_steps: int, steps_per_round: int) -> int:
    """The most rounds (up to ``MAX_ROUNDS``) a run can spend on the trial: at least as many steady steps
    must be left after it (an endless input always affords every round); 0 when not even ``MIN_ROUNDS``
    fit."""
    if expected_steps is None:
        return MAX_ROUNDS
    affordable = (expected_steps - warmup_steps) // (2 * steps_per_round)
    return min(MAX_ROUNDS, affordable) if affordable >= MIN_ROUNDS else 0
