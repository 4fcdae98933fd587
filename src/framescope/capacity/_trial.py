"""One capacity trial: N replayed cameras, measured until the percentile's verdict is known with confidence.

A trial passes when the share of frames later than the budget is shown to be at most ``1 - percentile``
(a p99 within the budget) and the share of frames dropped at most ``max_drop``, each with a one-sided exact
binomial test (:func:`framescope.stats.tail_share`, LoadGen's early-stopping idea); it fails when either is
shown to be over. A trial stops as soon as its verdict is known, a pass after at least ``min_seconds``, a
failure after at least ``min(min_seconds, 5 s)``, or at ``max_seconds`` (then judged on its point estimates
and marked not confident).

While a run is going, its rows give each batch's oldest and newest frame's latency only: the watch estimates
how many of a batch's frames were late by spreading them evenly between the two (frames of a dynamic batch
arrive spread over its wait), only to decide when to stop. The verdict itself is computed afterwards from
the run's summary, which counts every frame against the budget; a trial the estimate stopped too early is
then judged on its point estimates and marked not confident.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framescope._observer import StartInfo
from framescope.experiment._runner import Watch
from framescope.records import Row
from framescope.stats import samples_to_show_within, tail_share

FAIL_AFTER_S = 5.0
"""A trial may end on a failure shown with confidence after this long, even when its minimum is longer."""


@dataclass(frozen=True)
class TailRule:
    """When a capacity trial has measured enough (see the module docstring)."""

    budget_ms: float
    percentile: float = 99.0
    max_drop: float = 0.01
    """The largest share of frames that may be dropped."""
    confidence: float = 0.95
    min_seconds: float = 5.0
    max_seconds: float = 30.0

    @property
    def late_share(self) -> float:
        """The share of frames that may be later than the budget: 0.01 for a p99."""
        return 1 - self.percentile / 100

    @property
    def frames_needed(self) -> int:
        """The fewest frames that can show the percentile within the budget (299 for a p99 at 95 %)."""
        return samples_to_show_within(self.late_share, confidence=self.confidence)

    def watch(self) -> TailWatch:
        return TailWatch(self)


class TailWatch(Watch):
    """Follows one trial's rows and asks it to stop once its verdict is known."""

    def __init__(self, rule: TailRule, clock: Callable[[], float] = time.monotonic) -> None:
        import scipy.stats  # noqa: F401  (imported now: importing it mid-run holds the GIL ~0.5 s, which
        # stalls the cameras' reader threads into a burst of drops the trial would then blame on the load)

        self.rule, self.clock = rule, clock
        self.started = clock()
        self.steps = 0
        self.frames = 0
        self.late = 0.0
        """Frames estimated late: each batch's frames spread evenly between its newest and oldest latency."""
        self.dropped = 0
        self.stable = False
        """Whether the verdict was known when it stopped (``pass`` or ``fail``)."""
        self.early: str | None = None

    def on_start(self, info: StartInfo) -> None:
        self.started = self.clock()  # the trial's time is measuring: building the model is not counted

    def on_step(self, row: Row) -> None:
        self.steps += 1
        if row.warmup or row.profiled:
            return
        budget = self.rule.budget_ms
        self.frames += row.frames
        self.dropped += row.dropped_frames or 0
        self.late += late_frames(row.frames, row.latency_ms, row.latency_min_ms, budget)

    def verdict(self) -> str | None:
        """``pass`` or ``fail`` once the rows show it with confidence, else None."""
        rule = self.rule
        published = self.frames + self.dropped
        drops = tail_share(self.dropped, published, rule.max_drop, confidence=rule.confidence)
        if drops == "beyond" and rule.max_drop > 0:
            return "fail"
        late = tail_share(round(self.late), self.frames, rule.late_share, confidence=rule.confidence)
        if late == "beyond":
            return "fail"
        if self.frames >= rule.frames_needed and late == "within" and drops == "within":
            return "pass"
        return None

    def stop_requested(self) -> bool:
        elapsed = self.clock() - self.started
        if elapsed < min(self.rule.min_seconds, FAIL_AFTER_S):
            return False
        verdict = self.verdict()
        # a failure shown with confidence ends the trial early; a pass only once it ran its minimum time
        if verdict == "fail" or (verdict == "pass" and elapsed >= self.rule.min_seconds):
            self.early, self.stable = verdict, True
            return True
        return elapsed >= self.rule.max_seconds


def late_frames(frames: int, oldest_ms: float | None, newest_ms: float | None, budget_ms: float) -> float:
    """How many of a batch's ``frames`` were later than ``budget_ms``, their latencies taken as spread evenly
    between the newest frame's and the oldest's."""
    if oldest_ms is None or oldest_ms <= budget_ms:
        return 0.0
    newest = oldest_ms if newest_ms is None else newest_ms
    if newest > budget_ms or oldest_ms == newest:
        return float(frames)
    return frames * (oldest_ms - budget_ms) / (oldest_ms - newest)


def judge(summary: dict[str, Any], rule: TailRule) -> dict[str, Any]:
    """A finished trial's verdict from its summary (``summary["sources"]``: every frame counted against
    the budget, the run's ``--deadline-ms``): ``verdict`` pass or fail, ``confident``, and the evidence."""
    sources = summary.get("sources") or {}
    overall = sources.get("overall") or {}
    frames = int(overall.get("frames") or 0)
    dropped = int(overall.get("dropped") or 0)
    on_time = overall.get("on_time_frames")
    late = frames - int(on_time) if on_time is not None else None
    published = frames + dropped
    evidence: dict[str, Any] = {
        "frames": frames,
        "dropped": dropped,
        "late": late,
        "drop_share": dropped / published if published else None,
        "late_share": late / frames if late is not None and frames else None,
        "p50_ms": overall.get("latency_p50_ms"),
        "p99_ms": overall.get("latency_p99_ms"),
        "on_time_fps": overall.get("on_time_fps"),
        "seconds": summary.get("wall_time_s"),
    }
    if summary.get("status") != "complete" or frames == 0 or late is None:
        why = summary.get("error") or (
            "no frame was processed" if frames == 0 else "the run did not count frames against the budget"
        )
        return {**evidence, "verdict": "fail", "confident": False, "why": str(why)}
    drops = tail_share(dropped, published, rule.max_drop, confidence=rule.confidence)
    tail = tail_share(late, frames, rule.late_share, confidence=rule.confidence)
    if drops == "beyond" or tail == "beyond":
        verdict, confident = "fail", True
    elif drops == "within" and tail == "within":
        verdict, confident = "pass", True
    else:  # not enough frames to say with confidence: the point estimates decide
        over = evidence["late_share"] > rule.late_share or evidence["drop_share"] > rule.max_drop
        verdict, confident = ("fail" if over else "pass"), False
    reasons = []
    if tail != "within":
        reasons.append(
            f"{late} of {frames} frames later than {rule.budget_ms:g} ms "
            f"({100 * evidence['late_share']:.1f} %, at most {100 * rule.late_share:g} % allowed)"
        )
    if drops != "within":
        reasons.append(
            f"{dropped} of {published} frames dropped ({100 * evidence['drop_share']:.1f} %, at most "
            f"{100 * rule.max_drop:g} % allowed)"
        )
    return {**evidence, "verdict": verdict, "confident": confident, "why": "; ".join(reasons) or None}
