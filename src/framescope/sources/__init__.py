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
from framescope.sources._many import ManySources, replica_offsets
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
    "ManySources",
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
    "replica_offsets",
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
    :class:`LiveSource`); they decode there, apart from any step, so ``span`` is not used for them. Several
    inputs (or ``--cameras N``) are several live sources, one :class:`ManySources`."""
    if config.source_count == 1:
        return _one_source(
            config,
            config.inputs[0],
            clock=clock,
            threads=threads,
            seed=seed,
            batch_size=batch_size,
            span=span,
        )
    specs = [parse_source(path) for path in config.inputs]
    for path, spec in zip(config.inputs, specs, strict=True):
        if not spec.live and config.source_fps is None:
            raise ConfigError(
                f"several sources are read live, but {path!r} is a file read as fast as it decodes; pass "
                "--source-fps N to replay the files as cameras."
            )
        if spec.kind == "camera" and config.cameras > 1:
            raise ConfigError(
                f"--cameras {config.cameras} would open camera {path!r} {config.cameras} times; replicate a "
                "--source-fps replay or a stream instead, or list each camera with --input_path."
            )
    sources: list[LiveSource] = []
    for path in config.inputs:
        for offset in replica_offsets(config.cameras, config.source_fps):
            live = _one_source(
                config,
                path,
                clock=clock,
                threads=threads,
                seed=seed,
                batch_size=batch_size,
                span=span,
                source_id=len(sources),
                start_offset_s=offset,
            )
            assert isinstance(live, LiveSource)  # several sources are all live (checked above)
            sources.append(live)
    return ManySources(sources, clock=clock)


def _one_source(
    config: SourceConfig,
    path: str,
    *,
    clock: Clock,
    threads: int,
    seed: int,
    batch_size: int,
    span: SpanFactory,
    source_id: int = 0,
    start_offset_s: float = 0.0,
) -> Source:
    spec = parse_source(path)
    options = ReadOptions(clock, span, threads, config.open_timeout_s, config.read_timeout_s)
    if not spec.live and config.source_fps is None:
        return _plain_source(spec, config, options, seed)
    if spec.live and config.source_fps is not None:
        raise ConfigError(
            f"--source-fps replays a file as a live camera, but {path!r} is already live; drop --source-fps."
        )
    inner = dataclasses.replace(options, span=no_span)  # decoded in the reader thread, apart from any step
    return LiveSource(
        lambda: _plain_source(spec, config, inner, seed),
        capacity=config.live_buffer or 2 * batch_size,
        clock=clock,
        pace_fps=config.source_fps,
        loop=config.loop,
        reconnect=spec.live,
        reconnect_on_end=spec.endless,
        reconnect_for_s=config.reconnect_for_s,
        read_timeout_s=config.read_timeout_s,
        fresh=not config.live_buffer,  # an explicit --live-buffer asks for smoothing: keep its order
        source_id=source_id,
        start_offset_s=start_offset_s,
    )
