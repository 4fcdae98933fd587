"""Turning the user's ``--input_path`` text into a kind of source. Pure: no I/O beyond ``os.path`` checks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from framescope.errors import ConfigError

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
ENDLESS_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp")
"""Live protocols: such a stream never ends on its own, so running out of frames means it was lost."""
_SYNTHETIC = re.compile(r"^synthetic:(\d+)x(\d+)(?::(\d+))?$", re.IGNORECASE)
_CAMERA_DEVICE = re.compile(r"^/dev/video(\d+)$")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: str
    """``file``, ``camera``, ``stream``, ``images``, ``synthetic`` or ``sample``."""
    target: str
    """The path, URL or camera index (as text)."""
    width: int = 0
    height: int = 0
    frames: int | None = None
    """Synthetic sources: how many frames (None: endless)."""

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")

    @property
    def endless(self) -> bool:
        """A camera or a live-protocol stream: it has no end, only interruptions. (HTTP may carry a file.)"""
        scheme = self.target.split("://", 1)[0].lower() if "://" in self.target else ""
        return self.kind == "camera" or (self.kind == "stream" and scheme in ENDLESS_SCHEMES)


def parse_source(text: str) -> SourceSpec:
    """Classify ``--input_path``.

    ``synthetic:1280x720`` (endless) or ``synthetic:1280x720:300`` (300 frames); ``sample:`` the built-in
    clip; a bare integer or ``/dev/videoN`` a camera; ``rtsp://``, ``http(s)://`` and other FFmpeg network
    URLs a stream; an existing directory a folder of images; anything else a video file.
    """
    value = text.strip()
    lower = value.lower()
    if lower.startswith("synthetic:"):
        match = _SYNTHETIC.match(value)
        if not match:
            raise ConfigError(
                f"--input_path {value!r} is not a synthetic source; write synthetic:WIDTHxHEIGHT or "
                "synthetic:WIDTHxHEIGHT:FRAMES, e.g. synthetic:1280x720:300."
            )
        width, height = int(match.group(1)), int(match.group(2))
        frames = int(match.group(3)) if match.group(3) else None
        if width < 2 or height < 2 or (frames is not None and frames < 1):
            raise ConfigError(f"--input_path {value!r}: width and height must be >= 2 and FRAMES >= 1.")
        return SourceSpec("synthetic", value, width=width, height=height, frames=frames)
    if lower in ("sample:", "sample:default"):
        return SourceSpec("sample", value)
    if lower.startswith("file://"):
        return SourceSpec("file", value[len("file://") :])
    scheme = lower.split("://", 1)[0] if "://" in lower else ""
    if scheme in STREAM_SCHEMES:
        return SourceSpec("stream", value)
    if scheme:
        raise ConfigError(
            f"--input_path {value!r}: unsupported scheme {scheme}://; use a file path or one of "
            f"{', '.join(s + '://' for s in STREAM_SCHEMES)}."
        )
    if os.path.isdir(value):
        return SourceSpec("images", value)
    if value.isdigit() and not os.path.exists(value):
        return SourceSpec("camera", value)
    device = _CAMERA_DEVICE.match(value)
    if device:
        return SourceSpec("camera", device.group(1))
    return SourceSpec("file", value)
