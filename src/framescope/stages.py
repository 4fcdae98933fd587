"""The one vocabulary of pipeline stages: what each is called in spans (NVTX ranges, torch.profiler, timing
samples), its CSV column, what it measures, and which side of the async pipeline runs it.

Every layer names stages through :class:`Stage` (a ``str`` enum, so a member is its span name), and the CSV's
stage columns, the summary's per-stage statistics and the README's column table all come from here. This
module imports nothing of framescope's, so sources, models, the pipeline and the records can all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """Where a stage runs in ``--pipeline async``: ahead of the model in the producer thread, or with it."""

    PRODUCER = "producer"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class _About:
    column: str
    doc: str
    side: Side
    wait: bool = False


class Stage(StrEnum):
    """A pipeline stage. ``str(Stage.READ) == "read"``: the member is the span's name."""

    READ = "read"
    DECODE = "decode"
    H2D = "h2d"
    PREP = "prep"
    D2H = "d2h"
    EXEC = "exec"
    POST = "post"
    SPLIT = "split"
    QUEUE_WAIT = "queue_wait"

    @property
    def column(self) -> str:
        """The CSV column of its per-step time in milliseconds."""
        return _ABOUT[self].column

    @property
    def doc(self) -> str:
        """What the column holds (the README's column table says the same)."""
        return _ABOUT[self].doc

    @property
    def side(self) -> Side:
        return _ABOUT[self].side

    @property
    def is_wait(self) -> bool:
        """Time spent waiting rather than working (the model waiting for its input)."""
        return _ABOUT[self].wait

    @classmethod
    def work(cls) -> tuple[Stage, ...]:
        """The stages that do work, in the order a step runs them."""
        return tuple(stage for stage in cls if not stage.is_wait)

    @classmethod
    def from_column(cls, column: str) -> Stage | None:
        return next((stage for stage in cls if stage.column == column), None)


_ABOUT: dict[Stage, _About] = {
    Stage.READ: _About(
        "read_latency_ms",
        "reading the batch's frames (demuxing, waiting for a stream) and stacking them into a uint8 tensor",
        Side.PRODUCER,
    ),
    Stage.DECODE: _About(
        "decode_latency_ms",
        "decoding the batch's frames and converting them to RGB (and resizing, with --decode-size); with "
        "OpenCV, whose read decodes, reading too",
        Side.PRODUCER,
    ),
    Stage.H2D: _About(
        "h2d_latency_ms", "host-to-device copy of the batch (empty when nothing is copied)", Side.PRODUCER
    ),
    Stage.PREP: _About(
        "prep_latency_ms",
        "the preprocessing transforms (on the device chosen by --prep-on-gpu)",
        Side.PRODUCER,
    ),
    Stage.D2H: _About(
        "d2h_latency_ms",
        "device-to-host copies: the model's output or results to the CPU, or GPU preprocessing feeding a CPU "
        "model (empty when nothing is copied)",
        Side.MODEL,
    ),
    Stage.EXEC: _About(
        "exec_latency_ms",
        "the model: forward in inference; forward, loss, backward, optimizer step in retrain (with "
        "--split-point: both parts, not the transfer between them)",
        Side.MODEL,
    ),
    Stage.POST: _About(
        "post_latency_ms",
        "post-processing: top-5 classes; box decoding, score filtering and NMS; class maps",
        Side.MODEL,
    ),
    Stage.SPLIT: _About(
        "split_transfer_latency_ms",
        "--split-point: moving activations between the two parts' devices",
        Side.MODEL,
    ),
    Stage.QUEUE_WAIT: _About(
        "queue_wait_ms",
        "--pipeline async: how long the model waited for its next batch (empty in sync)",
        Side.MODEL,
        wait=True,
    ),
}

PRODUCER_STAGES = tuple(stage for stage in Stage.work() if stage.side is Side.PRODUCER)
"""The stages an async pipeline runs ahead of the model, in its producer thread."""
