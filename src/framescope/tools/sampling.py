"""Choosing frames by presentation time: the frame nearest each target time, each frame used at most once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Pick(Generic[T]):
    target_s: float
    """The moment that was asked for."""
    pts_s: float
    """When the chosen frame is shown."""
    frame: T


class PtsSampler(Generic[T]):
    """Targets are ``start``, ``start + 1/fps``, ... up to ``end``; frames are offered in presentation order.

    For each target the nearer of the last frame before it and the first frame at or after it is chosen, so a
    variable-frame-rate clip yields frames at the right moments and a constant-rate one yields exactly the
    frames at the target times. A frame is never written twice: when frames are sparser than targets (``fps``
    above the clip's rate, or a gap in a VFR clip), targets that would reuse a frame are skipped.
    Targets after the last frame are outside the video and yield nothing.
    """

    def __init__(self, fps: float, start_s: float = 0.0, end_s: float | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"{fps = } should be > 0.")
        self.interval = 1.0 / fps
        self.start_s = start_s
        self.end_s = end_s
        self._index = 0
        self._previous: tuple[float, T] | None = None
        self._previous_taken = False

    @property
    def next_target(self) -> float:
        return self.start_s + self._index * self.interval

    def done(self) -> bool:
        """No target is left before ``end``: reading further is pointless."""
        return self.end_s is not None and self.next_target > self.end_s + 1e-9

    def offer(self, pts_s: float, frame: T) -> list[Pick[T]]:
        picks: list[Pick[T]] = []
        taken = False
        while not self.done() and pts_s >= self.next_target - 1e-9:
            target = self.next_target
            previous = self._previous
            use_previous = (
                previous is not None
                and not self._previous_taken
                and abs(previous[0] - target) < abs(pts_s - target)
                and previous[0] >= self.start_s - 1e-9
            )
            if use_previous and previous is not None:
                picks.append(Pick(target, previous[0], previous[1]))
                self._previous_taken = True
            elif not taken:
                picks.append(Pick(target, pts_s, frame))
                taken = True
            self._index += 1
        self._previous = (pts_s, frame)
        self._previous_taken = taken
        return picks
