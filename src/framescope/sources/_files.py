"""Checks that turn a bad file path into one clear line before any decoder sees it."""

from __future__ import annotations

import os

from framescope.errors import SourceError


def check_video_file(path: str) -> None:
    """Raise :class:`SourceError` when ``path`` is missing, unreadable or empty."""
    if not os.path.exists(path):
        raise SourceError(
            f"input {path!r} does not exist; check the path (relative paths start at {os.getcwd()})."
        )
    if not os.path.isfile(path):
        raise SourceError(
            f"input {path!r} is not a regular file; pass a video file or a directory of images."
        )
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {path!r}: permission denied; fix its permissions (e.g. chmod a+r).")
    if os.path.getsize(path) == 0:
        raise SourceError(f"input {path!r} is empty (0 bytes); re-copy or re-export the video.")


def stream_lost(spec_kind: str, target: str, frames: int, read_timeout_s: float) -> SourceError:
    return SourceError(
        f"{spec_kind} {target} stopped delivering frames after {frames} frame(s) (no data for "
        f"{read_timeout_s:g} s, or closed by the other end); check the source, or raise --read-timeout."
    )


def no_first_frame(spec_kind: str, target: str, read_timeout_s: float) -> SourceError:
    return SourceError(
        f"{spec_kind} {target} opened but sent no frame within {read_timeout_s:g} s; check the source, or "
        "raise --read-timeout."
    )


def not_a_video(path: str, detail: str) -> SourceError:
    return SourceError(
        f"{path!r} is not a readable video ({detail}); check it is a complete video file FFmpeg can play "
        f"(ffprobe {path})."
    )
