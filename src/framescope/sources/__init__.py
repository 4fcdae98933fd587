"""Frame sources: video files, cameras, network streams, image folders and synthetic frames."""

from __future__ import annotations

import dataclasses

from framescope.config import SourceConfig
from framescope.errors import ConfigError
from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, InputTally, ReadOptions, Source, SourceInfo, SpanFactory, no_span
from framescope.sources._clips import sample_clip_path, write_clip
from framescope.sources._images import ImageFolderSource, list_images, read_image
from framescope.sources._live import FrameBuffer, LiveSource, backoff_delays
from framescope.sources._opencv import OpenCVSource
from framescope.sources._pyav import PyAVSource
from framescope.sources._shortfall import input_shortfall
from framescope.sources._spec import SourceSpec, parse_source
from framescope.sources._synthetic import SyntheticSource
from framescope.sources._torchcodec import TorchCodecSource

__all__ = [
    "Frame",
    "FrameBuffer",
    "ImageFolderSource",
    "InputTally",
    "LiveSource",
    "OpenCVSource",
    "PyAVSource",
    "ReadOptions",
    "Source",
    "SourceInfo",
    "SourceSpec",
    "SyntheticSource",
    "TorchCodecSource",
    "backoff_delays",
    "input_shortfall",
    "list_images",
    "make_source",
    "parse_source",
    "read_image",
    "sample_clip_path",
    "write_clip",
]


def _plain_source(spec: SourceSpec, config: SourceConfig, options: ReadOptions, seed: int) -> Source:
    if spec.kind == "synthetic":
        return SyntheticSource(
            spec.width, spec.height, spec.frames, seed=seed, clock=options.clock, span=options.span
        )
    if spec.kind == "images":
        return ImageFolderSource(spec.target, clock=options.clock, span=options.span)
    if spec.kind == "sample":
        spec = SourceSpec("file", str(sample_clip_path()))
    if config.decoder == "torchcodec":
        return TorchCodecSource(spec, options, on_gpu=config.decode_on_gpu)
    if config.decoder == "pyav":
        return PyAVSource(spec, options, on_gpu=config.decode_on_gpu)
    return OpenCVSource(spec, options)


def make_source(
    config: SourceConfig,
    *,
    clock: Clock = monotonic,
    threads: int = 0,
    seed: int = 0,
    batch_size: int = 1,
    span: SpanFactory = no_span,
) -> Source:
    """The source ``config.input_path`` names, not yet opened; it marks its decoding with ``span`` (the span
    of the timer of the thread that will read it). Cameras and streams, and inputs replayed with
    ``--source-fps``, are live: a reader thread keeps the newest frames and reconnects (see
    :class:`LiveSource`); they decode there, apart from any step, so ``span`` is not used for them."""
    spec = parse_source(config.input_path)
    options = ReadOptions(clock, span, threads, config.open_timeout_s, config.read_timeout_s)
    if not spec.live and config.source_fps is None:
        return _plain_source(spec, config, options, seed)
    if spec.live and config.source_fps is not None:
        raise ConfigError(
            f"--source-fps replays a file as a live camera, but {config.input_path!r} is already live; drop "
            "--source-fps."
        )
    inner = dataclasses.replace(options, span=no_span)  # decoded in the reader thread, apart from any step
    return LiveSource(
        lambda: _plain_source(spec, config, inner, seed),
        capacity=config.live_buffer or 2 * batch_size,
        clock=clock,
        pace_fps=config.source_fps,
        reconnect=spec.live,
        reconnect_on_end=spec.endless,
        reconnect_for_s=config.reconnect_for_s,
        read_timeout_s=config.read_timeout_s,
        fresh=not config.live_buffer,  # an explicit --live-buffer asks for smoothing: keep its order
    )
