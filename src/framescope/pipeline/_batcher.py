"""Gathering frames into uint8 batches."""

from __future__ import annotations

import numpy as np
import torch

from framescope.preprocess import Batch
from framescope.sources import Frame, Source


def read_frames(source: Source, count: int) -> list[Frame]:
    """Up to ``count`` frames; fewer at the end of the input, none after it."""
    frames: list[Frame] = []
    while len(frames) < count:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


def collate(frames: list[Frame]) -> Batch:
    """N x 3 x H x W uint8 (for arrays, a channels-last view of the stacked frames), or a list of 3 x H x W
    tensors when the frames differ in size. Tensor frames (torchcodec) stay on the device they were decoded
    on."""
    shape = frames[0].image.shape
    same = all(f.image.shape == shape for f in frames)
    if isinstance(frames[0].image, torch.Tensor):
        tensors = [torch.as_tensor(f.image) for f in frames]
        return torch.stack(tensors) if same else tensors
    if same:
        return torch.from_numpy(np.stack([f.image for f in frames])).permute(0, 3, 1, 2)
    return [torch.from_numpy(np.asarray(f.image)).permute(2, 0, 1) for f in frames]


def read_batch(source: Source, count: int) -> tuple[list[Frame], Batch] | None:
    """Up to ``count`` frames and their batch; None after the end of the input."""
    frames = read_frames(source, count)
    return (frames, collate(frames)) if frames else None
