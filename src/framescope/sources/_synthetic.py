"""Generated frames: the decode cost is zero, so a run measures preprocessing and the model alone."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, Source, SourceInfo, SpanFactory, no_span

SYNTHETIC_FPS = 30.0
_DISTINCT_FRAMES = 8


@lru_cache(maxsize=8)
def _gradients(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width]
    horizontal = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    vertical = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    diagonal = (((xx + yy) // 4) % 256).astype(np.uint8)
    return horizontal, vertical, diagonal


def noise_field(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Fixed per-pixel noise, so a codec has real detail to encode."""
    return np.random.default_rng(seed).integers(0, 16, size=(height, width, 1), dtype=np.uint8)


def pattern_frame(width: int, height: int, index: int, noise: np.ndarray | None = None) -> np.ndarray:
    """A moving colour gradient with a bright square: structured enough for a codec, cheap to make."""
    horizontal, vertical, diagonal = _gradients(width, height)
    image = np.empty((height, width, 3), dtype=np.uint8)
    # uint8 arithmetic wraps around, which is the modulo-256 scroll we want.
    np.add(horizontal, np.uint8(index * 3 % 256), out=image[..., 0])
    np.add(vertical, np.uint8(index * 2 % 256), out=image[..., 1])
    np.add(diagonal, np.uint8(index * 5 % 256), out=image[..., 2])
    if noise is not None:
        image += noise
    side = max(2, min(width, height) // 6)
    x0 = (index * 7) % max(width - side, 1)
    y0 = (index * 3) % max(height - side, 1)
    image[y0 : y0 + side, x0 : x0 + side] = 255
    return image


class SyntheticSource(Source):
    """Cycles a few pre-generated frames at a nominal 30 FPS; endless unless ``frames`` is given."""

    def __init__(
        self,
        width: int,
        height: int,
        frames: int | None = None,
        *,
        seed: int = 0,
        clock: Clock = monotonic,
        span: SpanFactory = no_span,
    ) -> None:
        super().__init__(clock, span)
        self.width, self.height, self.frames = width, height, frames
        self.seed = seed
        self._images: list[np.ndarray] = []
        count = "endless" if frames is None else f"{frames} frames"
        self.info = SourceInfo(
            kind="synthetic",
            uri=f"synthetic:{width}x{height} ({count})",
            decoder="none",
            live=False,
            width=width,
            height=height,
            fps=SYNTHETIC_FPS,
            frame_count=frames,
        )

    def open(self) -> None:
        noise = noise_field(self.width, self.height, self.seed)
        self._images = [pattern_frame(self.width, self.height, i, noise) for i in range(_DISTINCT_FRAMES)]

    def read(self) -> Frame | None:
        if self.frames is not None and self.frames_read >= self.frames:
            self._end()
            return None
        index = self.frames_read
        # Hand out a copy, as a decoder would hand out a fresh buffer.
        image = self._images[index % len(self._images)].copy()
        return self._frame(image, index / SYNTHETIC_FPS)
