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
from framescope.sources._base import DECODE, Frame, Source, SourceInfo, SpanFactory, no_span

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp",
)  # fmt: skip
"""Named when a directory holds videos but no images: the user meant one of them."""
_LISTED = 5
log = logging.getLogger(__name__)


def natural_key(path: Path) -> list[object]:
    parts = re.split(r"(\d+)", str(path))
    return [int(p) if p.isdigit() else p.lower() for p in parts]


def list_images(directory: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``directory`` (recursively), in natural order."""
    root = Path(directory)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def _names(paths: list[Path], root: Path) -> str:
    """Up to a few paths, relative to ``root``, for a one-line message."""
    names = [p.relative_to(root).as_posix() for p in paths[:_LISTED]]
    if len(paths) > _LISTED:
        names.append(f"... {len(paths) - _LISTED} more")
    return ", ".join(names)


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

    def __init__(self, directory: str, *, clock: Clock = monotonic, span: SpanFactory = no_span) -> None:
        super().__init__(clock, span)
        self.directory = directory
        self.files: list[Path] = []
        self.skipped_files: list[str] = []
        self._next = 0
        self._first: np.ndarray | None = None
        """The first readable image, decoded by ``open()`` and handed out by the first ``read()``."""
        self.info = SourceInfo(kind="images", uri=directory, decoder="opencv", live=False)

    def open(self) -> None:
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise SourceError(
                f"cannot read directory {self.directory!r}: permission denied; fix its permissions."
            )
        self.files = list_images(self.directory)
        if not self.files:
            root = Path(self.directory)
            videos = sorted(
                (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES),
                key=natural_key,
            )
            if videos:
                raise SourceError(
                    f"directory {self.directory!r} holds no images but {len(videos)} video file(s) "
                    f"({_names(videos, root)}); pass one of them as --input_path."
                )
            raise SourceError(
                f"directory {self.directory!r} has no images ({', '.join(IMAGE_SUFFIXES)}); pass a directory "
                "of images or a video file."
            )
        self.info.frame_count = len(self.files)
        # Fail fast on a folder of broken files; stop at the first readable image and keep it.
        self._first = self._next_image(None, quiet=True)
        if self._first is None:
            raise SourceError(
                f"directory {self.directory!r} has {len(self.files)} image file(s) but none could be decoded "
                f"({_names(self.files, Path(self.directory))}); check they are complete images (re-copy or "
                "re-export them), or pass a video file."
            )
        for path in self.skipped_files:
            log.warning("skipped %s: not a readable image", path)

    def _next_image(self, size: tuple[int, int] | None, *, quiet: bool = False) -> np.ndarray | None:
        """The next readable image (RGB), skipping, counting and (unless ``quiet``) logging unreadable files;
        None after the last."""
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            with self.span(DECODE):
                rgb = read_image(path, size)
            if rgb is not None:
                return rgb
            self.frames_skipped += 1
            self.skipped_files.append(str(path))
            if not quiet:
                log.warning("skipped %s: not a readable image", path)
        return None

    def read(self) -> Frame | None:
        rgb: np.ndarray | None
        if self._first is not None:
            rgb, self._first = self._first, None
            size = self.output_size
            if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
                cv2 = import_cv2()
                with self.span(DECODE):
                    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        else:
            rgb = self._next_image(self.output_size)
        if rgb is None:
            self._end()
            return None
        if self.info.width is None:
            self.info.width, self.info.height = int(rgb.shape[1]), int(rgb.shape[0])
        return self._frame(rgb, None)
