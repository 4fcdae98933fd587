"""Host memory a run's batches need, checked before anything is allocated.

A batch size that cannot fit is an error that says so and suggests one that fits, instead of a 23 GB
allocation failing inside the warm-up (or the kernel's OOM killer ending the process without a word). The
estimate counts what framescope itself holds per frame: the decoded uint8 frame (twice: as decoded and
stacked into the batch) and the float32 model input (twice: the transform's output and an intermediate),
for every batch in flight (one in the sync pipeline; the prefetch queue, the one being made and the one
running in the async pipeline), plus a live input's frame buffer. The model's own activations come on top,
which is why only part of the available memory is offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import psutil

from framescope.config import RunConfig
from framescope.errors import ConfigError, OutOfMemory

USABLE_SHARE = 0.7
"""The share of available memory the batches may take; the rest is for the model, its activations, the
decoder and everything else on the machine."""
GIB = 2**30


@dataclass(frozen=True, slots=True)
class BatchMemory:
    frames: int
    """Frames per batch as the run will see them (never more than a finite input has)."""
    bytes_per_frame: int
    """Host bytes one frame costs across the batches in flight."""
    batches_in_flight: int
    live_buffer_frames: int
    frame_bytes: int
    """One decoded frame (uint8 RGB)."""

    @property
    def total(self) -> int:
        return self.frames * self.bytes_per_frame + self.live_buffer_frames * self.frame_bytes


def available_memory() -> int:
    """Bytes this process may still allocate: what the OS calls available, capped by a cgroup v2 limit."""
    available = psutil.virtual_memory().available
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def batch_memory(
    config: RunConfig,
    *,
    frame_size: tuple[int, int],
    model_input: tuple[int, int],
    frame_count: int | None,
    live: bool,
) -> BatchMemory:
    """What a run of ``config`` holds for its batches: ``frame_size`` and ``model_input`` are (width,
    height) of a decoded frame and of the model's input."""
    largest = config.largest_batch  # --max-batch with dynamic batching
    frames = min(largest, frame_count) if frame_count else largest
    frame_bytes = frame_size[0] * frame_size[1] * 3
    input_bytes = model_input[0] * model_input[1] * 3 * 4
    in_flight = config.prefetch + 2 if config.pipeline == "async" else 1
    # every live source (each input, times --cameras) keeps its own buffer
    per_source = config.source.live_buffer or 2 * config.batch_size
    buffer = per_source * config.source.source_count if live else 0
    return BatchMemory(
        frames=frames,
        bytes_per_frame=in_flight * (2 * frame_bytes + 2 * input_bytes),
        batches_in_flight=in_flight,
        live_buffer_frames=buffer,
        frame_bytes=frame_bytes,
    )


class BatchTooLarge(ConfigError, OutOfMemory):
    """A batch size whose frames cannot fit in host memory, refused before allocating."""


def check_batch_memory(need: BatchMemory, config: RunConfig, available: int | None = None) -> None:
    """A :class:`BatchTooLarge` (a ConfigError) naming the need, what is available and a batch size that
    fits, when the batches would take more than :data:`USABLE_SHARE` of the available memory."""
    available = available_memory() if available is None else available
    budget = USABLE_SHARE * available
    if need.total <= budget:
        return
    # each frame of the batch costs its share of the batches in flight, and (with --batch-size) of the live
    # buffers, which hold a multiple of the batch size unless --live-buffer fixed them
    dynamic = config.batching == "dynamic" and config.max_batch is not None
    flag, size = ("--max-batch", config.largest_batch) if dynamic else ("--batch-size", config.batch_size)
    buffer_per_frame = need.live_buffer_frames * need.frame_bytes / config.batch_size
    if config.source.live_buffer or dynamic:
        budget -= need.live_buffer_frames * need.frame_bytes
        buffer_per_frame = 0
    fits = max(0, math.floor(budget / (need.bytes_per_frame + buffer_per_frame)))
    what = f"{need.frames} frames per batch"
    if need.batches_in_flight > 1:
        what += f", {need.batches_in_flight} batches in flight"
    if need.live_buffer_frames:
        sources = config.source.source_count
        what += f", live buffers of {need.live_buffer_frames} frames" + (
            f" for {sources} sources" if sources > 1 else ""
        )
    if budget <= 0 and need.live_buffer_frames:
        advice = (
            "the live buffers alone do not fit; use fewer sources (--cameras), a smaller --live-buffer, or "
            "--decode-size to decode smaller frames"
        )
    elif fits >= 1:
        advice = f"use {flag} {fits} or less"
    else:
        advice = "even one frame does not fit; free memory or use --decode-size to decode smaller frames"
    raise BatchTooLarge(
        f"{flag} {size} needs about {need.total / GIB:.1f} GiB of host memory for its "
        f"frames and model inputs ({what}), more than the {available / GIB:.1f} GiB available; {advice}."
    )


def host_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CPU allocator failing (a RuntimeError, unlike CUDA's OutOfMemoryError)."""
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
