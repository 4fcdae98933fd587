"""Generated frames: the decode cost is zero, so a run measures preprocessing and the model alone."""

from __future__ import annotations

import numpy as np

from framescope.instrument.clock import Clock, monotonic
from framescope.sources._base import Frame, Source, SourceInfo

SYNTHETIC_FPS = 30.0
_DISTINCT_FRAMES = 8


def pattern_frame(width: int, height: int, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A moving colour gradient with a bright square: structured enough for a codec, cheap to make."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = (xx * 255 // max(width - 1, 1) + index * 3) % 256
    image[..., 1] = (yy * 255 // max(height - 1, 1) + index * 2) % 256
    image[..., 2] = ((xx + yy) // 4 + index * 5) % 256
    side = max(2, min(width, height) // 6)
    x0 = (index * 7) % max(width - side, 1)
    y0 = (index * 3) % max(height - side, 1)
    image[y0 : y0 + side, x0 : x0 + side] = 255
    if rng is not None:
        noise = rng.integers(0, 16, size=(height, width, 1), dtype=np.uint8)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image


class SyntheticSource(Source):
    """Cycles a few pre-generated frames at a nominal 30 FPS; endless unless ``frames`` is given."""

    def __init__(
        self, width: int, height: int, frames: int | None = None, *, seed: int = 0, clock: Clock = monotonic
    ) -> None:
        super().__init__(clock)
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
        rng = np.random.default_rng(self.seed)
        self._images = [pattern_frame(self.width, self.height, i, rng) for i in range(_DISTINCT_FRAMES)]

    def read(self) -> Frame | None:
        if self.frames is not None and self.frames_read >= self.frames:
            return None
        index = self.frames_read
        # Hand out a copy, as a decoder would hand out a fresh buffer.
        image = self._images[index % len(self._images)].copy()
        return self._frame(image, index / SYNTHETIC_FPS)
