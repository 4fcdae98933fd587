"""Importing OpenCV quietly: framescope reports problems itself, in one line, so OpenCV's and its bundled
FFmpeg's own warnings ("[ WARN:0@0.02] ...", "moov atom not found") are silenced unless the user asked for
them through the same environment variables."""

from __future__ import annotations

import os
from types import ModuleType


def import_cv2() -> ModuleType:
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    import cv2

    if os.environ["OPENCV_LOG_LEVEL"] == "ERROR":  # also when cv2 was imported before the variable was set
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2
