"""Batching frames from several live sources: fixed batches, or dynamic ones (Triton's dynamic batcher,
DeepStream's ``nvstreammux``).

Fixed: a batch holds ``--batch-size`` frames, taken as they arrive. Dynamic: a batch is formed from the
frames that have arrived across sources once ``--max-batch`` of them wait, or once the oldest has waited
``--max-delay-ms``, whichever comes first. Either way, when more frames wait than fit, sources take turns
(round-robin, one frame each, starting after the source served last), so no source is starved. Under
overload each source that fell behind first keeps only its newest share of a batch (see
:meth:`~framescope.sources.Source.skip_to_newest`).

The batcher takes the clock, and the sources through a small protocol, so it is tested with a fake clock
and scripted arrivals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from framescope.instrument import Clock
from framescope.sources import Frame

_POLL_S = 0.5
"""How long to wait for frames before looking again when nothing bounds the wait (the end of an input is
announced too, so this only bounds a lost wake-up)."""


class Arrivals(Protocol):
    """What a batcher needs of several sources (:class:`~framescope.sources.ManySources`)."""

    @property
    def generation(self) -> int: ...

    @property
    def ended(self) -> bool: ...

    def waiting(self) -> list[int]: ...

    def oldest_arrival_s(self) -> float | None: ...

    def take(self, source: int, count: int) -> list[Frame]: ...

    def wait(self, seen: int, timeout_s: float) -> None: ...

    def skip_to_newest(self, keep: int) -> None: ...


def round_robin(waiting: Sequence[int], count: int, start: int) -> tuple[list[int], int]:
    """How many of the ``waiting`` frames to take from each source for at most ``count`` more: one frame
    per source in turn, from source ``start``; and the source whose turn is next."""
    taken = [0] * len(waiting)
    turn = start % len(waiting) if waiting else 0
    left = min(count, sum(waiting))
    while left > 0:
        if taken[turn] < waiting[turn]:
            taken[turn] += 1
            left -= 1
        turn = (turn + 1) % len(waiting)
    return taken, turn


@dataclass
class Batcher:
    """Forms batches from several sources (see the module docstring)."""

    mode: Literal["fixed", "dynamic"]
    max_batch: int
    """Dynamic: the largest batch. (Fixed batches hold the count the loop asks for.)"""
    max_delay_s: float
    """Dynamic: the longest the oldest waiting frame waits for a batch to fill."""
    clock: Clock
    _turn: int = field(default=0, repr=False)

    def frames(self, arrivals: Arrivals, count: int) -> list[Frame]:
        """The next batch's frames; fewer than a full batch only at the end (fixed) or when the delay ran
        out (dynamic); none once every source ended."""
        limit = self.max_batch if self.mode == "dynamic" else count
        arrivals.skip_to_newest(limit)
        frames: list[Frame] = []
        while True:
            seen = arrivals.generation
            waiting = arrivals.waiting()
            if self.mode == "fixed":
                frames += self._take(arrivals, waiting, limit - len(frames))
                if len(frames) >= limit or arrivals.ended:
                    return frames
                arrivals.wait(seen, _POLL_S)
                continue
            total = sum(waiting)
            oldest = arrivals.oldest_arrival_s()
            due = None if oldest is None else oldest + self.max_delay_s
            if total >= limit or (total and due is not None and self.clock() >= due) or arrivals.ended:
                return self._take(arrivals, waiting, limit)
            arrivals.wait(seen, _POLL_S if due is None else min(_POLL_S, due - self.clock()))

    def _take(self, arrivals: Arrivals, waiting: list[int], room: int) -> list[Frame]:
        counts, self._turn = round_robin(waiting, room, self._turn)
        frames: list[Frame] = []
        for source, count in enumerate(counts):
            if count:
                frames += arrivals.take(source, count)
        return frames
