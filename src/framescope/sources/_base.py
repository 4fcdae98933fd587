"""What every source yields: frames with their stream timestamp and arrival time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import torch

from framescope._secrets import redact
from framescope.instrument.clock import Clock, monotonic

SpanFactory = Callable[[str], contextlib.AbstractContextManager[Any]]
DECODE = "decode"
"""The span sources mark around decoding and colour conversion, inside the loop's ``read`` stage."""


def no_span(name: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass(slots=True)
class Frame:
    """One decoded frame."""

    image: np.ndarray | torch.Tensor
    """RGB uint8: a height x width x 3 array, or (torchcodec) a 3 x height x width tensor, on the GPU when
    decoded there."""
    index: int
    """0-based position of the frame in what the source delivered."""
    pts_s: float | None
    """Presentation timestamp in seconds on the stream's clock; None where the source has none (images)."""
    arrival_s: float
    """When the source handed the frame over, on the run's clock (seconds)."""
    due_s: float | None = None
    """Live inputs: when the frame was due (its scheduled arrival), on the run's clock; latency counts from
    here. None for inputs read as fast as the pipeline goes (files)."""
    source: int = 0
    """Which of the run's sources delivered it (0-based, in the order given; 0 for a run with one)."""


@dataclass(slots=True)
class SourceInfo:
    """What a source is, for the run's log and ``summary.json``."""

    kind: str
    """``file``, ``camera``, ``stream``, ``images`` or ``synthetic``."""
    uri: str
    decoder: str
    live: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    """Nominal frame rate where the container states one (variable-rate clips still report one)."""
    frame_count: int | None = None
    """Frames in a finite source where known up front."""
    duration_s: float | None = None
    """Length of a finite source in seconds where the container states it."""
    codec: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # what is recorded and shown never carries a password; sources keep the real URL to connect with
        self.uri = redact(self.uri)


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a decoder reads: the run's clock, the span it decodes inside, FFmpeg threads and the time-outs."""

    clock: Clock = monotonic
    span: SpanFactory = no_span
    threads: int = 0
    """FFmpeg decoding threads; 0 leaves the choice to the decoder."""
    open_timeout_s: float = 10.0
    """Seconds to wait for a stream or camera to open."""
    read_timeout_s: float = 10.0
    """Seconds to wait for a stream's next frame before it counts as stalled."""


DEFAULT_OPTIONS = ReadOptions()


@dataclass(frozen=True, slots=True)
class InputTally:
    """How much of a finite input a source delivered, against what its container announced."""

    frames_read: int
    """Frames the source delivered."""
    frames_skipped: int
    """Undecodable packets or files the source skipped."""
    reached_end: bool
    """Whether reading stopped because the input ran out (not because the run stopped reading, nor because a
    live input was reconnected, which restarts the count)."""
    frames_expected: int | None
    """Frames the container announced: its frame count, or duration x frame rate where it states no count."""
    seconds_expected: float | None
    """The video's duration as the container states it."""
    seconds_read: float | None
    """Presentation time the delivered frames cover: last minus first timestamp plus one frame interval; None
    where frames carry no timestamps (images)."""


class Source:
    """A frame source. ``open()`` fails fast with a :class:`~framescope.errors.SourceError` when the input is
    missing, empty, corrupt or unreachable; ``read()`` returns the next frame or None at the end of the input.
    Sources do not batch, time stages or know the model."""

    info: SourceInfo

    def __init__(self, clock: Clock = monotonic, span: SpanFactory = no_span) -> None:
        self.clock = clock
        self.frames_read = 0
        self.frames_skipped = 0
        """Frames or files that could not be decoded and were skipped."""
        self.span: SpanFactory = span
        """Given when the source is built: sources mark their decoding with ``self.span(DECODE)`` (the span of
        the timer of the thread that reads them); they never time."""
        self.output_size: tuple[int, int] | None = None
        """(width, height) to resize to while decoding, where the decoder can; None: the native size."""
        self.warnings: list[str] = []
        """Things the user should know about how the input was read (a GPU decoder falling back, ...)."""
        self.reached_end = False
        """Set once ``read()`` returned None because the input ran out."""
        self._first_pts_s: float | None = None
        self._last_pts_s: float | None = None

    def set_output_size(self, size: tuple[int, int] | None) -> None:
        """Resize frames to ``size`` (width, height) as part of decoding, from the next frame on."""
        self.output_size = size

    @property
    def dropped(self) -> int:
        """Frames a live input dropped because the pipeline fell behind."""
        return 0

    @property
    def reconnects(self) -> int:
        """Times a live input was reopened after a stall or drop."""
        return 0

    def skip_to_newest(self, keep: int) -> None:
        """Before a batch: a live input that processes the newest frames drops all but the newest ``keep``
        it holds (and counts them as dropped). Files, and live inputs asked to buffer, keep every frame."""

    def discard(self, frames: int) -> None:
        """Count ``frames`` the pipeline read but threw away unprocessed (a stale prefetched batch of a live
        input) as dropped."""

    def discard_batch(self, frames: list[Frame]) -> None:
        """:meth:`discard` for the frames of a thrown-away batch (several sources count them each)."""
        self.discard(len(frames))

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input; safe to call twice."""

    def tally(self) -> InputTally:
        """What was read against what the container announced; meaningful once ``read()`` returned None."""
        info = self.info
        expected = info.frame_count
        if expected is None and info.duration_s and info.fps:
            expected = round(info.duration_s * info.fps)
        seconds_read = None
        if self._first_pts_s is not None and self._last_pts_s is not None:
            seconds_read = self._last_pts_s - self._first_pts_s + (1.0 / info.fps if info.fps else 0.0)
        return InputTally(
            frames_read=self.frames_read,
            frames_skipped=self.frames_skipped,
            reached_end=self.reached_end,
            frames_expected=expected,
            seconds_expected=self._announced_duration_s(),
            seconds_read=seconds_read,
        )

    def _announced_duration_s(self) -> float | None:
        return self.info.duration_s

    def _frame(self, image: np.ndarray | torch.Tensor, pts_s: float | None) -> Frame:
        frame = Frame(image=image, index=self.frames_read, pts_s=pts_s, arrival_s=self.clock())
        self.frames_read += 1
        if pts_s is not None:
            if self._first_pts_s is None:
                self._first_pts_s = pts_s
            self._last_pts_s = pts_s
        return frame

    def _end(self) -> None:
        """The input ran out: ``read()`` returns None from here on."""
        self.reached_end = True

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
