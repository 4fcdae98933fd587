"""A directory of images, read in natural sort order (``img2`` before ``img10``), nested folders included."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from framescope._cv2 import import_cv2
from framescope.errors import SourceError
from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import DECODE, Frame, Source, SourceInfo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
log = logging.getLogger(__name__)


def natural_key(path: Path) -> list[object]:
    parts = re.split(r"(\d+)", str(path))
    return [int(p) if p.isdigit() else p.lower() for p in parts]


def list_images(directory: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``directory`` (recursively), in natural order."""
    root = Path(directory)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The image at ``path`` as RGB uint8 (height x width x 3), resized to ``size`` (width, height) where
    given; None when it is not a readable image."""
    cv2 = import_cv2()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageFolderSource(Source):
    """Reads each image with OpenCV; files that cannot be decoded are skipped, counted and listed."""

    def __init__(self, directory: str, *, clock: Clock = monotonic) -> None:
        super().__init__(clock)
        self.directory = directory
        self.files: list[Path] = []
        self.skipped_files: list[str] = []
        self._next = 0
        self.info = SourceInfo(kind="images", uri=directory, decoder="opencv", live=False)

    def open(self) -> None:
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise SourceError(
                f"cannot read directory {self.directory!r}: permission denied; fix its permissions."
            )
        self.files = list_images(self.directory)
        if not self.files:
            raise SourceError(
                f"directory {self.directory!r} has no images ({', '.join(IMAGE_SUFFIXES)}); pass a directory "
                "of images or a video file."
            )
        self.info.frame_count = len(self.files)

    def read(self) -> Frame | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            with self.span(DECODE):
                rgb = read_image(path, self.output_size)
            if rgb is None:
                self.frames_skipped += 1
                self.skipped_files.append(str(path))
                log.warning("skipped %s: not a readable image", path)
                continue
            if self.info.width is None:
                self.info.width, self.info.height = int(rgb.shape[1]), int(rgb.shape[0])
            return self._frame(rgb, None)
        return None
