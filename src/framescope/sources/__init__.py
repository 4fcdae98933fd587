"""Frame sources: video files, cameras, network streams, image folders and synthetic frames."""

from __future__ import annotations

from framescope.config import SourceConfig
from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, Source, SourceInfo
from framescope.sources._clips import sample_clip_path, write_clip
from framescope.sources._images import ImageFolderSource, list_images
from framescope.sources._opencv import OpenCVSource
from framescope.sources._pyav import PyAVSource
from framescope.sources._spec import SourceSpec, parse_source
from framescope.sources._synthetic import SyntheticSource
from framescope.sources._torchcodec import TorchCodecSource

__all__ = [
    "Frame",
    "ImageFolderSource",
    "OpenCVSource",
    "PyAVSource",
    "Source",
    "SourceInfo",
    "SourceSpec",
    "SyntheticSource",
    "TorchCodecSource",
    "list_images",
    "make_source",
    "parse_source",
    "sample_clip_path",
    "write_clip",
]


def make_source(config: SourceConfig, *, clock: Clock = monotonic, threads: int = 0, seed: int = 0) -> Source:
    """The source ``config.input_path`` names, not yet opened."""
    spec = parse_source(config.input_path)
    if spec.kind == "synthetic":
        return SyntheticSource(spec.width, spec.height, spec.frames, seed=seed, clock=clock)
    if spec.kind == "images":
        return ImageFolderSource(spec.target, clock=clock)
    if spec.kind == "sample":
        spec = SourceSpec("file", str(sample_clip_path()))
    if config.decoder == "torchcodec":
        return TorchCodecSource(spec, clock=clock, threads=threads, on_gpu=config.decode_on_gpu)
    if config.decoder == "pyav":
        return PyAVSource(
            spec,
            clock=clock,
            threads=threads,
            open_timeout_s=config.open_timeout_s,
            read_timeout_s=config.read_timeout_s,
            on_gpu=config.decode_on_gpu,
        )
    return OpenCVSource(
        spec,
        clock=clock,
        threads=threads,
        open_timeout_s=config.open_timeout_s,
        read_timeout_s=config.read_timeout_s,
    )
