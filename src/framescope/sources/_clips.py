"""Writing H.264 test clips with PyAV's libx264: the built-in sample, test fixtures and benchmarks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from framescope.sources._synthetic import noise_field, pattern_frame


def write_clip(
    path: str | os.PathLike[str],
    *,
    width: int = 320,
    height: int = 240,
    frames: int = 30,
    fps: int = 30,
    pts_ms: Sequence[int] | None = None,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    crf: int = 28,
) -> Path:
    """Encode a clip of moving test patterns.

    ``pts_ms`` gives each frame's presentation time in milliseconds for a variable-frame-rate clip
    (``frames`` is then its length). Odd sizes need a chroma format without subsampling (``yuv444p``).
    The file is written atomically, so a concurrent reader never sees half a clip.
    """
    import av

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if pts_ms is not None:
        frames = len(pts_ms)
    suffix = target.suffix or ".mp4"
    fd, tmp_name = tempfile.mkstemp(prefix=".clip-", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        with av.open(tmp_name, "w") as container:
            stream = container.add_stream(codec, rate=fps)
            assert isinstance(stream, av.VideoStream), f"{codec = } is not a video codec"
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            if codec == "libx264":
                stream.options = {"preset": "ultrafast", "crf": str(crf)}
            if pts_ms is not None:
                stream.codec_context.time_base = Fraction(1, 1000)
            noise = noise_field(width, height)
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(pattern_frame(width, height, index, noise), format="rgb24")
                if pts_ms is not None:
                    frame.pts = int(pts_ms[index])
                    frame.time_base = Fraction(1, 1000)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


SAMPLE_NAME = "framescope-sample-640x360-30fps-300f.mp4"


def sample_clip_path() -> Path:
    """The built-in sample clip (``--input_path sample:``), generated on first use into the user cache."""
    base = os.environ.get("FRAMESCOPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "framescope"
    )
    path = Path(base) / SAMPLE_NAME
    if not path.exists():
        write_clip(path, width=640, height=360, frames=300, fps=30)
    return path
