"""Several live sources in one run (cameras, streams, replays), presented to a batcher.

Every source keeps its own reader, buffer, drops, reconnects and due times (each is a :class:`LiveSource`);
this wrapper only says what waits where, hands frames over without waiting, and wakes a waiting batcher
when any source delivers. It does not batch: the pipeline's batcher decides which frames form a batch.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence

from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, InputTally, Source, SourceInfo
from framescope.sources._live import LiveSource


def replica_offsets(count: int, fps: float | None) -> list[float]:
    """Start offsets (seconds) of ``count`` replicas of one input: replica i starts i/count of a frame
    interval later, so their frames arrive spread over the interval, not in lock-step. Without a rate (a
    stream), no offsets: a stream's frames arrive when they arrive."""
    if not fps:
        return [0.0] * count
    return [i / (count * fps) for i in range(count)]


class ManySources(Source):
    """Live sources read together; frames carry their source's id (its position in ``sources``)."""

    def __init__(self, sources: Sequence[LiveSource], *, clock: Clock = monotonic) -> None:
        if not sources:
            raise ValueError("ManySources needs at least one source.")
        super().__init__(clock)
        self.sources = list(sources)
        self._changed = threading.Condition()
        self.generation = 0
        """Counts deliveries (and ends) across sources; a batcher waits for it to move."""
        for source in self.sources:
            source.buffer.on_change = self._poke
        self._turn = 0
        self.info = SourceInfo(kind="live", uri="", decoder="", live=True)

    def _poke(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    # --- what a batcher asks ---------------------------------------------------------------------------

    def waiting(self) -> list[int]:
        """Frames buffered per source."""
        return [len(source.buffer) for source in self.sources]

    def oldest_arrival_s(self) -> float | None:
        """When the oldest frame waiting in any source arrived; None when none waits."""
        arrivals = [a for a in (s.buffer.oldest_arrival_s() for s in self.sources) if a is not None]
        return min(arrivals) if arrivals else None

    def take(self, source: int, count: int) -> list[Frame]:
        """Up to ``count`` frames of source ``source``, without waiting."""
        frames = self.sources[source].take(count)
        self.frames_read += len(frames)
        return frames

    @property
    def ended(self) -> bool:
        """Every source ended and every frame was taken."""
        return all(source.ended for source in self.sources)

    def wait(self, seen: int, timeout_s: float) -> None:
        """Until a source delivers (``generation`` moves past ``seen``) or ``timeout_s`` passes."""
        for source in self.sources:
            source._start()
        with self._changed:
            self._changed.wait_for(lambda: self.generation != seen, timeout=max(0.0, timeout_s))

    def skip_to_newest(self, keep: int) -> None:
        """Each source that fell behind keeps its newest share of a batch of ``keep`` frames."""
        share = max(1, math.ceil(keep / len(self.sources)))
        for source in self.sources:
            source.skip_to_newest(share)

    # --- a Source like any other -----------------------------------------------------------------------

    def open(self) -> None:
        opened: list[LiveSource] = []
        try:
            for source in self.sources:
                source.set_output_size(self.output_size)
                source.open()
                opened.append(source)
        except BaseException:
            for source in opened:
                source.close()
            raise
        first = self.sources[0].info
        fps = [s.info.fps for s in self.sources]
        counts = [s.info.frame_count for s in self.sources]
        self.info = dataclasses.replace(
            first,
            uri=", ".join(s.info.uri for s in self.sources),
            fps=sum(f for f in fps if f) if all(fps) else None,  # frames a second, all sources together
            frame_count=sum(c for c in counts if c) if all(counts) else None,
            duration_s=max((s.info.duration_s or 0.0) for s in self.sources) or None,
            extra={
                **first.extra,
                "sources": [s.info.uri for s in self.sources],
                "source_fps": first.fps,
                "newest_first": all(s.fresh for s in self.sources),
            },
        )
        self.warnings = [w for s in self.sources for w in s.warnings]

    def read(self) -> Frame | None:
        """One frame, sources in turn (for code that reads frame by frame; batchers use :meth:`take`)."""
        while True:
            seen = self.generation
            for offset in range(len(self.sources)):
                index = (self._turn + offset) % len(self.sources)
                frames = self.take(index, 1)
                if frames:
                    self._turn = index + 1
                    return frames[0]
            if self.ended:
                return None
            self.wait(seen, 0.5)

    def set_output_size(self, size: tuple[int, int] | None) -> None:
        super().set_output_size(size)
        for source in self.sources:
            source.set_output_size(size)

    @property
    def dropped(self) -> int:
        return sum(source.dropped for source in self.sources)

    def dropped_by_source(self) -> list[int]:
        return [source.dropped for source in self.sources]

    @property
    def reconnects(self) -> int:
        return sum(source.reconnects for source in self.sources)

    def discard(self, frames: int) -> None:
        self.sources[0].discard(frames)  # unattributed: discard_batch knows better

    def discard_batch(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.sources[frame.source].discard(1)

    def tally(self) -> InputTally:
        """The first source's (a shortfall is judged per input; the replicas read the same one)."""
        return self.sources[0].tally()

    def close(self) -> None:
        for source in self.sources:
            source.close()
