"""Live inputs: cameras, network streams, and files replayed at a frame rate (``--source-fps``).

A live input does not wait for the pipeline. A reader thread takes frames as they come and keeps the newest
few in a bounded buffer; when the pipeline falls behind, the oldest frames are dropped and counted. Each
frame carries the time it was due (its scheduled arrival), so latency counts from then, not from when the
pipeline got to it: a slow model cannot hide its backlog. When a stream stalls or drops, the reader reconnects
with exponential backoff, logging each attempt, until no frame has come for ``reconnect_for_s`` seconds.

Everything takes the clock and the sleep function, so buffering, drops and reconnects are tested with a fake
clock and a fake source.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from framescope.errors import SourceError
from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, InputTally, Source, SourceInfo

log = logging.getLogger(__name__)


class FrameBuffer:
    """At most ``capacity`` frames, oldest dropped first; thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"{capacity = } should be >= 1.")
        self.capacity = capacity
        self._frames: deque[Frame] = deque()
        self._lock = threading.Condition()
        self.dropped = 0
        self.closed = False
        self.on_change: Callable[[], None] | None = None
        """Called after a frame is put or the buffer closed (several sources wake one waiting batcher)."""

    def put(self, frame: Frame) -> None:
        with self._lock:
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._lock.notify_all()
        if self.on_change is not None:
            self.on_change()

    def close(self) -> None:
        """No more frames will come; readers get what is left, then None."""
        with self._lock:
            self.closed = True
            self._lock.notify_all()
        if self.on_change is not None:
            self.on_change()

    def take(self, count: int) -> list[Frame]:
        """Up to ``count`` of the oldest buffered frames, without waiting."""
        with self._lock:
            return [self._frames.popleft() for _ in range(min(count, len(self._frames)))]

    def oldest_arrival_s(self) -> float | None:
        """When the oldest buffered frame arrived; None when empty."""
        with self._lock:
            return self._frames[0].arrival_s if self._frames else None

    def get(self, timeout_s: float | None = None) -> Frame | None:
        """The oldest buffered frame; waits for one; None once closed and empty (or on time-out)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._frames or self.closed, timeout=timeout_s):
                return None
            return self._frames.popleft() if self._frames else None

    def trim(self, keep: int) -> int:
        """Drop the oldest frames beyond the newest ``keep`` (counted as dropped); how many went."""
        with self._lock:
            extra = max(0, len(self._frames) - keep)
            for _ in range(extra):
                self._frames.popleft()
            self.dropped += extra
            return extra

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def backoff_delays(first_s: float, limit_s: float) -> Callable[[int], float]:
    """Attempt n (0-based) waits first_s * 2**n, at most limit_s."""

    def delay(attempt: int) -> float:
        return float(min(limit_s, first_s * (2**attempt)))

    return delay


DEFAULT_BACKOFF = backoff_delays(0.5, 8.0)
"""0.5, 1, 2, 4, 8, 8, ... seconds between reconnect attempts."""


@dataclass
class LiveStats:
    reconnects: int = 0
    """Times the input was reopened after a stall or a drop."""
    seconds_without_input: float = 0.0
    """Time spent reconnecting."""


class LiveSource(Source):
    """Wraps a source opened by ``open_source`` as a live input (see the module docstring).

    ``pace_fps``: replay the wrapped (finite) source as a camera at that rate: frame i is due at
    ``start + i / pace_fps`` and is published no earlier than that. Otherwise frames are due when they
    arrive. A replayed file ends at its end, or with ``loop`` starts again from its start, its schedule
    going on (frame i is still due at ``start + i / pace_fps``). A stream or camera that stalls is
    reconnected until ``reconnect_for_s`` seconds pass without a frame; one that ends is reconnected only with
    ``reconnect_on_end`` (cameras and live protocols, which have no end; not an HTTP file, which does).
    """

    def __init__(
        self,
        open_source: Callable[[], Source],
        *,
        capacity: int,
        clock: Clock = monotonic,
        sleep: Callable[[float], None] | None = None,
        pace_fps: float | None = None,
        loop: bool = False,
        reconnect: bool = True,
        reconnect_on_end: bool = True,
        reconnect_for_s: float = 60.0,
        backoff: Callable[[int], float] | None = None,
        read_timeout_s: float = 10.0,
        fresh: bool = True,
        source_id: int = 0,
        start_offset_s: float = 0.0,
    ) -> None:
        """``source_id`` is stamped on every frame; ``start_offset_s`` delays a replay's schedule (replicas of
        one clip as several cameras, so their frames do not arrive in lock-step)."""
        super().__init__(clock)
        self.source_id = source_id
        self.start_offset_s = start_offset_s
        self.open_source = open_source
        self.buffer = FrameBuffer(capacity)
        self.fresh = fresh
        """Under overload, process the newest frames (drop older ones before each batch); False: work
        through the buffer in order (``--live-buffer N``: smoothing asked for)."""
        self.discarded = 0
        self._overflow_mark = 0
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait  # a real sleep wakes up when the run stops
        self.pace_fps = pace_fps
        self.loop = loop and pace_fps is not None
        self.loops = 0
        """Times a looped replay started again from its start."""
        self.reconnect = reconnect and pace_fps is None
        self.reconnect_on_end = reconnect_on_end
        self.reconnect_for_s = reconnect_for_s
        self.backoff = backoff or DEFAULT_BACKOFF
        self.read_timeout_s = read_timeout_s
        self.stats = LiveStats()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._inner: Source | None = None
        self._published = 0
        self.info = SourceInfo(kind="live", uri="", decoder="", live=True)

    # --- the reader thread -------------------------------------------------------------------------------

    def _open_inner(self) -> Source:
        self._pts_origin: float | None = None  # a reopened stream starts its clock afresh
        self._offset = float("inf")
        inner = self.open_source()
        # inner keeps its no-op span: it decodes in the reader thread, ahead of and apart from any step
        inner.set_output_size(self.output_size)
        inner.open()
        self._inner = inner
        return inner

    def _due(self, frame: Frame) -> float:
        """When a stream's frame was due: its presentation time on the run's clock. The stream clock's offset
        is the smallest delay seen since (re)connecting (a jitter buffer's estimate), so frames that sat in a
        network buffer count as late instead of looking fresh; without timestamps, arrival time."""
        arrival = frame.arrival_s
        if frame.pts_s is None:
            return arrival
        if self._pts_origin is None:
            self._pts_origin = frame.pts_s
        relative = frame.pts_s - self._pts_origin
        self._offset = min(self._offset, arrival - relative)
        return relative + self._offset

    def _publish(self, frame: Frame, due_s: float) -> None:
        frame.due_s = due_s
        frame.source = self.source_id
        frame.index = self._published
        self._published += 1
        self.buffer.put(frame)

    def _pump(self, inner: Source, start_s: float) -> None:
        """Move frames from ``inner`` into the buffer until it ends or stalls (raising SourceError); a looped
        replay reopens ``inner`` at its end (a file that yields no frame at all ends it)."""
        since_open = 0
        while not self._stop.is_set():
            frame = inner.read()
            if frame is None:
                if not self.loop or since_open == 0:
                    return
                inner.close()
                inner = self._open_inner()
                self.loops += 1
                since_open = 0
                continue
            since_open += 1
            if self.pace_fps is None:
                self._publish(frame, self._due(frame))
                continue
            due = start_s + self._published / self.pace_fps
            ahead = due - self.clock()
            if ahead > 0:
                self.sleep(ahead)
            frame.arrival_s = max(due, self.clock())
            self._publish(frame, due)

    def _run(self) -> None:
        try:
            inner = self._inner
            start_s = self.clock() + self.start_offset_s
            while not self._stop.is_set():
                try:
                    if inner is None:
                        inner = self._open_inner()
                    self._pump(inner, start_s)
                    if not (self.reconnect and self.reconnect_on_end) or self._stop.is_set():
                        return  # the input ended, or the run is over
                    raise SourceError(f"{self.info.uri} ended")
                except SourceError as exc:
                    if not self.reconnect:
                        raise
                    if inner is not None:
                        inner.close()
                    inner = self._inner = None
                    self._reconnect(exc)
                    inner = self._inner
        except BaseException as exc:
            self.error = exc
        finally:
            if self._inner is not None:
                self._inner.close()
            self.buffer.close()

    def _reconnect(self, cause: SourceError) -> None:
        """Wait (backing off) and reopen until a frame-delivering source is back, or give up."""
        lost_at = self.clock()
        attempt = 0
        while not self._stop.is_set():
            delay = self.backoff(attempt)
            waited = self.clock() - lost_at
            if waited + delay > self.reconnect_for_s:
                raise SourceError(
                    f"{self.info.uri} is gone: no frames for {waited:.0f} s after {self.stats.reconnects} "
                    f"reconnect(s) ({cause}); check the source, or raise --reconnect-for."
                )
            log.warning(
                "%s: no frames (%s); reconnecting in %.1f s (attempt %d)",
                self.info.uri,
                cause,
                delay,
                attempt + 1,
            )
            self.sleep(delay)
            attempt += 1
            try:
                self._open_inner()
            except SourceError as exc:
                cause = exc
                continue
            self.stats.reconnects += 1
            self.stats.seconds_without_input += self.clock() - lost_at
            log.warning("%s: reconnected after %.1f s", self.info.uri, self.clock() - lost_at)
            return

    # --- the pipeline's side -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the input in the calling thread (so a bad input fails at once), then start the reader."""
        inner = self._open_inner()
        self.info = dataclasses.replace(
            inner.info,
            live=True,
            fps=self.pace_fps or inner.info.fps,
            frame_count=inner.info.frame_count if self.pace_fps and not self.loop else None,
            duration_s=inner.info.duration_s if self.pace_fps and not self.loop else None,
            extra={
                **inner.info.extra,
                "replayed_at_fps": self.pace_fps,
                "looped": self.loop,
                "buffer": self.buffer.capacity,
                "newest_first": self.fresh,
            },
        )
        self.warnings = inner.warnings

    def _start(self) -> None:
        """The reader starts with the first read, so frames arriving while the model is still being built
        are not counted as dropped by the pipeline."""
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="framescope-live-reader", daemon=True)
            self._thread.start()

    def set_output_size(self, size: tuple[int, int] | None) -> None:
        super().set_output_size(size)
        if self._inner is not None:
            self._inner.set_output_size(size)

    def take(self, count: int) -> list[Frame]:
        """Up to ``count`` buffered frames without waiting (a batcher of several sources); none at the end.
        A failure of the reader is raised here."""
        self._start()
        frames = self.buffer.take(count)
        self.frames_read += len(frames)
        if not frames and self.buffer.closed and self.error is not None:
            raise self.error
        return frames

    @property
    def ended(self) -> bool:
        """The input ended (or failed) and every frame it delivered was taken."""
        return self.buffer.closed and not len(self.buffer)

    def read(self) -> Frame | None:
        self._start()
        while True:
            frame = self.buffer.get(timeout_s=0.5)
            if frame is not None:
                self.frames_read += 1
                return frame
            if self.buffer.closed and not len(self.buffer):
                if self.error is not None:
                    raise self.error
                return None

    def tally(self) -> InputTally:
        """The wrapped source's: frames it decoded (the buffer's drops are the pipeline's, not the input's)
        against what its container announced. A reconnected input restarted its count, so it never reached
        "the" end."""
        inner = self._inner
        if inner is None:
            return super().tally()
        tally = inner.tally()
        if self.stats.reconnects:
            tally = dataclasses.replace(tally, reached_end=False)
        return tally

    @property
    def dropped(self) -> int:
        return self.buffer.dropped + self.discarded

    def skip_to_newest(self, keep: int) -> None:
        """Only when the pipeline is behind: the buffer overflowed (dropped frames) since the last batch.
        A pipeline that keeps up on average but meets a burst of frames keeps them all."""
        if self.fresh and self.buffer.dropped > self._overflow_mark:
            self.buffer.trim(keep)
        self._overflow_mark = self.buffer.dropped

    def discard(self, frames: int) -> None:
        self.discarded += frames

    @property
    def reconnects(self) -> int:
        return self.stats.reconnects

    def close(self) -> None:
        """Stop the reader; it closes the wrapped source itself (closing it under a read in progress is
        not safe), after at most one read time-out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.read_timeout_s + 5)
            self._thread = None
        elif self._inner is not None:
            self._inner.close()
