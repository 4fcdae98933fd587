"""The three preprocessing levels, as batched torchvision transforms v2 on uint8 tensors.

The same transform objects run on CPU or GPU tensors: where the batch lives decides where the work runs.

``size`` is the model's input size, ``resize`` the shorter side of its reference resize.

* simple: Resize straight to ``size`` (aspect ratio not kept) -> float32 in [0, 1] -> Normalize.
* medium: the model's reference evaluation transform: Resize the shorter side to ``resize`` (aspect kept)
  -> CenterCrop ``size`` -> float32 in [0, 1] -> Normalize.
* complex: medium, plus photometric augmentation before the float conversion: ColorJitter (brightness,
  contrast, saturation 0.4, hue 0.1) -> GaussianBlur (kernel 5, sigma 0.1-2.0) -> RandomHorizontalFlip.

Models with a variable input size (the R-CNN family, RetinaNet, FCOS, segmentation) have no ``size``: every
level resizes the shorter side to ``resize`` (capped at ``max_size`` on the longer side) and skips the crop.
Detection models normalise inside the model, so their transforms stop at float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

Batch = torch.Tensor | list[torch.Tensor]
"""A uint8 batch: one N x 3 x H x W tensor, or a list of 3 x H x W tensors when frame sizes differ."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a model expects as input."""

    task: str
    """``classification``, ``detection`` or ``segmentation``."""
    size: tuple[int, int] | None
    """Fixed (height, width) input, or None where the model takes any size."""
    resize: int
    """Shorter side of the reference resize (before a centre crop to ``size``)."""
    max_size: int | None = None
    """Cap on the longer side after resizing (R-CNN style models)."""
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    """Normalisation mean, or None where the model normalises internally."""
    std: tuple[float, ...] | None = IMAGENET_STD


def _resize_ops(level: str, spec: InputSpec) -> list[v2.Transform]:
    if spec.size is None:
        return [v2.Resize(spec.resize, max_size=spec.max_size, antialias=True)]
    if level == "simple":
        return [v2.Resize(list(spec.size), antialias=True)]
    return [v2.Resize(spec.resize, antialias=True), v2.CenterCrop(list(spec.size))]


def resized_size(level: str, spec: InputSpec, width: int, height: int) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` frame after the level's first resize: the smallest frame
    that loses nothing the preprocessing keeps, so decoding straight to it (``--decode-size auto``) saves the
    work of producing full-size RGB."""
    if spec.size is not None and level == "simple":
        return spec.size[1], spec.size[0]
    short, long = sorted((width, height))
    new_short, new_long = spec.resize, int(spec.resize * long / short)
    if spec.size is None and spec.max_size is not None and new_long > spec.max_size:
        new_short, new_long = int(spec.max_size * new_short / new_long), spec.max_size
    return (new_short, new_long) if width <= height else (new_long, new_short)


def build_transform(level: str, spec: InputSpec) -> v2.Compose:
    """The transform for ``level`` (``simple``, ``medium`` or ``complex``), for a batched uint8 tensor."""
    if level not in ("simple", "medium", "complex"):
        raise ValueError(f"{level = } should be one of simple, medium, complex.")
    ops: list[v2.Transform] = _resize_ops(level, spec)
    if level == "complex":
        ops += [
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
            v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0)),
            v2.RandomHorizontalFlip(p=0.5),
        ]
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if spec.mean is not None and spec.std is not None:
        ops.append(Normalize(spec.mean, spec.std))
    return v2.Compose(ops)


class Normalize(torch.nn.Module):
    """``(image - mean) / std`` per channel, exactly as torchvision's ``v2.Normalize`` computes it, but with
    the mean and std kept on each device they were used on. torchvision builds them from Python lists on
    every call, which on a GPU is a blocking host-to-device copy: a host synchronisation per batch in the
    middle of the pipeline."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._constants:  # once per device, in the untimed warm-up
            mean = torch.tensor(self.mean, dtype=dtype).view(-1, 1, 1).to(device)
            std = torch.tensor(self.std, dtype=dtype).view(-1, 1, 1).to(device)
            self._constants[key] = (mean, std)
        return self._constants[key]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = self._on(image.device, image.dtype)
        return image.sub(mean).div_(std)


def _stack_or_resize(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-sized images; otherwise resize every image to the first one's size and stack."""
    height, width = images[0].shape[-2:]
    if all(img.shape[-2:] == (height, width) for img in images):
        return torch.stack(list(images))
    return torch.stack([v2.functional.resize(img, [height, width], antialias=True) for img in images])


class Preprocessor:
    """Callable that turns a uint8 batch into the model's input on whatever device the batch is on.

    A list batch (frames of different sizes) is transformed image by image; the result is stacked into one
    tensor unless the model accepts a list (detection), in which case differently sized results stay a list.
    """

    def __init__(self, level: str, spec: InputSpec) -> None:
        self.level = level
        self.spec = spec
        self.transform: Callable[[torch.Tensor], torch.Tensor] = build_transform(level, spec)

    def __call__(self, batch: Batch) -> Batch:
        if isinstance(batch, torch.Tensor):
            return self.transform(batch)
        out = [self.transform(img) for img in batch]
        if self.spec.task == "detection":
            shapes = {tuple(t.shape) for t in out}
            return torch.stack(out) if len(shapes) == 1 else out
        return _stack_or_resize(out)
