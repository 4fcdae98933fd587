"""What every source yields: frames with their stream timestamp and arrival time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import torch

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


class Source:
    """A frame source. ``open()`` fails fast with a :class:`~framescope.errors.SourceError` when the input is
    missing, empty, corrupt or unreachable; ``read()`` returns the next frame or None at the end of the input.
    Sources do not batch, time stages or know the model."""

    info: SourceInfo

    def __init__(self, clock: Clock = monotonic) -> None:
        self.clock = clock
        self.frames_read = 0
        self.frames_skipped = 0
        """Frames or files that could not be decoded and were skipped."""
        self.span: SpanFactory = no_span
        """Set by the pipeline: sources mark their decoding with ``self.span(DECODE)``; they never time."""
        self.output_size: tuple[int, int] | None = None
        """(width, height) to resize to while decoding, where the decoder can; None: the native size."""
        self.warnings: list[str] = []
        """Things the user should know about how the input was read (a GPU decoder falling back, ...)."""

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

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input; safe to call twice."""

    def _frame(self, image: np.ndarray, pts_s: float | None) -> Frame:
        frame = Frame(image=image, index=self.frames_read, pts_s=pts_s, arrival_s=self.clock())
        self.frames_read += 1
        return frame

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
