"""``framescope extract-frames``: keep frames of a video at a given rate of video time, as images.

Sampling follows presentation timestamps, not frame indices (see
:class:`~framescope.tools.sampling.PtsSampler`), so a variable-frame-rate clip yields frames at the right
moments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framescope._cv2 import import_cv2
from framescope.config import ExtractConfig
from framescope.errors import ConfigError, OutputError
from framescope.records import ensure_writable_dir
from framescope.sources import PyAVSource, ReadOptions, parse_source
from framescope.tools.sampling import PtsSampler


@dataclass
class ExtractResult:
    output_dir: Path
    files: list[Path] = field(default_factory=list)
    pts_s: list[float] = field(default_factory=list)
    """The presentation time of each written frame, in the order of ``files``."""
    frames_decoded: int = 0
    packets_skipped: int = 0
    duration_s: float | None = None
    """The video's duration where the container states it."""


def image_name(prefix: str, index: int, pts_s: float, fmt: str) -> str:
    """``shot_000003_00006000ms.png``: sorts in time order, carries the image index and the frame's time."""
    return f"{prefix}{index:06d}_{round(pts_s * 1000):08d}ms.{fmt}"


def _open(config: ExtractConfig) -> PyAVSource:
    spec = parse_source(config.input)
    if spec.kind not in ("file", "stream"):
        raise ConfigError(
            f"-i {config.input!r} is a {spec.kind}; extract-frames reads a video file or a stream URL."
        )
    source = PyAVSource(
        spec, ReadOptions(open_timeout_s=config.open_timeout_s, read_timeout_s=config.read_timeout_s)
    )
    source.open()
    return source


def extract_frames(
    config: ExtractConfig, *, on_progress: Callable[[float, float | None], None] | None = None
) -> ExtractResult:
    """Write the sampled frames; ``on_progress(pts_s, duration_s)`` is called as decoding advances."""
    output = Path(config.output)
    ensure_writable_dir(output, flag="-o/--output")
    cv2 = import_cv2()
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, config.quality]
        if config.format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    source = _open(config)
    result = ExtractResult(output_dir=output, duration_s=source.info.duration_s)
    sampler: PtsSampler[Any] = PtsSampler(config.fps, config.start_s, config.end_s)
    try:
        source.seek(config.start_s)
        while not sampler.done():
            frame = source.read_raw()
            if frame is None:
                break
            result.frames_decoded += 1
            if frame.time is None or frame.time < config.start_s - 1e-9:
                continue
            for pick in sampler.offer(float(frame.time), frame):
                path = output / image_name(config.prefix, len(result.files), pick.pts_s, config.format)
                if not cv2.imwrite(str(path), pick.frame.to_ndarray(format="bgr24"), params):
                    raise OutputError(
                        f"could not write {path}; check free space and permissions of -o/--output."
                    )
                result.files.append(path)
                result.pts_s.append(pick.pts_s)
            if on_progress is not None:
                on_progress(float(frame.time), result.duration_s)
    finally:
        result.packets_skipped = source.frames_skipped
        source.close()
    return result
