"""Gathering frames into uint8 batches.

A batch that goes to the GPU next is stacked straight into pinned (page-locked) host memory, as part of
reading it: a copy from pinned memory can run without blocking the host and overlap with compute, and pinning
here, while the frames are stacked anyway, costs no extra pass over them. The ``h2d`` stage is then the device
copy alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from framescope.pipeline._many import Batcher
from framescope.preprocess import Batch
from framescope.sources import Frame, ManySources, Source


def read_frames(source: Source, count: int, batcher: Batcher | None = None) -> list[Frame]:
    """Up to ``count`` frames; fewer at the end of the input, none after it. A live input that fell behind
    first drops all but its newest ``count`` frames, so the batch is the freshest there is. Several sources
    are batched by ``batcher`` (fixed or dynamic, round-robin across sources)."""
    if batcher is not None and isinstance(source, ManySources):
        return batcher.frames(source, count)
    source.skip_to_newest(count)
    frames: list[Frame] = []
    while len(frames) < count:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


def pinned_empty(shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised uint8 tensor in pinned host memory (torch's caching host allocator reuses blocks)."""
    return torch.empty(tuple(shape), dtype=torch.uint8, pin_memory=True)


def collate(frames: list[Frame], *, pin: bool = False) -> Batch:
    """N x 3 x H x W uint8 (for arrays, a channels-last view of the stacked frames), or a list of 3 x H x W
    tensors when the frames differ in size. Tensor frames (torchcodec) stay on the device they were decoded
    on. With ``pin``, host batches are stacked into pinned memory."""
    shape = frames[0].image.shape
    same = all(f.image.shape == shape for f in frames)
    if isinstance(frames[0].image, torch.Tensor):
        tensors = [torch.as_tensor(f.image) for f in frames]
        pin = pin and not tensors[0].is_cuda
        if not same:
            return [t.pin_memory() for t in tensors] if pin else tensors
        if pin:
            return torch.stack(tensors, out=pinned_empty((len(tensors), *tensors[0].shape)))
        return torch.stack(tensors)
    if same:
        if pin:
            stacked = pinned_empty((len(frames), *shape))
            np.stack([f.image for f in frames], out=stacked.numpy())
            return stacked.permute(0, 3, 1, 2)
        return torch.from_numpy(np.stack([f.image for f in frames])).permute(0, 3, 1, 2)
    images = [torch.from_numpy(np.asarray(f.image)).permute(2, 0, 1) for f in frames]
    return [image.pin_memory() for image in images] if pin else images


def read_batch(
    source: Source, count: int, *, pin: bool = False, batcher: Batcher | None = None
) -> tuple[list[Frame], Batch] | None:
    """Up to ``count`` frames and their batch (in pinned memory with ``pin``); None after the end."""
    frames = read_frames(source, count, batcher)
    return (frames, collate(frames, pin=pin)) if frames else None
