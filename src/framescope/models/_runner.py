"""Running a model step: inference (eval, inference mode) or retrain (frozen backbone, new head, virtual
labels, loss, backward, optimizer step), with optional AMP and torch.compile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from framescope.config import ModelConfig
from framescope.errors import ModelError
from framescope.models._amp import autocast
from framescope.models._detection import detection_family, forward_raw
from framescope.models._heads import freeze_except, replace_head
from framescope.models._split import SpanFactory, SplitModel, parse_split_point
from framescope.preprocess import Batch


@dataclass(slots=True)
class StepResult:
    output: Any
    """What the model returned (logits, detections, a segmentation map, or a loss dict in retrain)."""
    loss: Any = None
    """The training loss of the step (retrain mode only): a 0-d tensor, read when the step's row is written,
    so an asynchronous GPU step is not forced to synchronise for it."""


def _compile(model: nn.Module, config: ModelConfig) -> Callable[..., Any]:
    try:
        return torch.compile(model, backend=config.compile_backend)
    except Exception as exc:  # an unknown backend name fails here, before any step runs
        raise ModelError(
            f"torch.compile(backend={config.compile_backend!r}) failed ({type(exc).__name__}); "
            "drop --enable-compile or pick another backend."
        ) from None


def _placed(
    model: nn.Module, config: ModelConfig, device: torch.device, span: SpanFactory | None
) -> tuple[nn.Module, Callable[..., Any]]:
    """(the model on its device(s), the callable that runs it): split across devices for --split-point,
    compiled for --enable-compile (each part on its own when split)."""
    if config.split_point is None:
        placed = model.to(device)
        return placed, (_compile(placed, config) if config.compile else placed)
    _, layer = parse_split_point(config.split_point)
    split = SplitModel(
        model,
        config.name,
        layer,
        first=torch.device("cpu"),
        second=device,
        span=span,
        compile_part=(lambda part: _compile(part, config)) if config.compile else None,
        amp=config.amp,  # each part under its own device's autocast
    )
    return split, split


def _refuse_detection_split(task: str, config: ModelConfig) -> None:
    """Detection models run in two stages (``forward_raw``, then post-processing) that a split cannot follow:
    a split point given for one is an error, never silently ignored."""
    if task == "detection" and config.split_point is not None:
        raise ModelError(
            f"--split-point {config.split_point!r}: {config.name} is a detection model, and detection models "
            "cannot be split; drop --split-point, or split a classification or segmentation model "
            "(framescope models --split-points MODEL lists its layers)."
        )


def _as_list(batch: Batch) -> list[torch.Tensor]:
    return list(batch) if isinstance(batch, torch.Tensor) else batch


class _Runner:
    """What both runners share: how they are made. ``device`` is where the model's output lives; with a split
    point the first part runs on the CPU and ``span`` times the transfer between the parts; ``seed`` seeds
    the retrain mode's new head and virtual labels."""

    def __init__(
        self,
        model: nn.Module,
        task: str,
        config: ModelConfig,
        device: torch.device,
        *,
        seed: int = 0,
        span: SpanFactory | None = None,
    ) -> None:
        _refuse_detection_split(task, config)  # before anything is frozen or moved
        self.task = task
        self.device = device
        self.amp = config.amp
        self._set_up(model, config, seed, span)

    def _set_up(self, model: nn.Module, config: ModelConfig, seed: int, span: SpanFactory | None) -> None:
        raise NotImplementedError


class InferenceRunner(_Runner):
    """``model.eval()`` under ``torch.inference_mode``."""

    def _set_up(self, model: nn.Module, config: ModelConfig, seed: int, span: SpanFactory | None) -> None:
        task, device = self.task, self.device
        if task == "detection":
            # The model stage stops at the raw head outputs; box decoding, filtering and NMS are the
            # post stage (framescope.postprocess). Compilation covers the backbone, the heavy part.
            self.model = model.eval().to(device)
            if config.compile:
                detector: Any = self.model
                detector.backbone = _compile(detector.backbone, config)
            family = detection_family(self.model)
            self.forward: Callable[..., Any] = lambda images: forward_raw(
                self.model, _as_list(images), family
            )
        else:
            self.model, self.forward = _placed(model.eval(), config, device, span)

    def __call__(self, batch: Batch) -> StepResult:
        with torch.inference_mode(), autocast(self.device, self.amp):
            return StepResult(self.forward(batch))

    def warm_up(self, batch: Batch) -> StepResult:
        """One untimed call: compilation, first-call allocation, cuDNN autotuning."""
        return self(batch)


class RetrainRunner(_Runner):
    """The seed's online learning: train mode, frozen backbone, a fresh head trained on virtual labels.

    Classification and segmentation models get their ``fc`` / ``heads`` / ``head`` / ``classifier`` output
    layer replaced by one with ``num_classes`` outputs. Detection models keep their heads and train everything
    but the backbone on one virtual box per image.
    """

    def _set_up(self, model: nn.Module, config: ModelConfig, seed: int, span: SpanFactory | None) -> None:
        task, device = self.task, self.device
        self.num_classes = config.num_classes
        if task == "detection":
            backbone = getattr(model, "backbone", None)
            if backbone is None:
                raise ModelError("this detection model has no backbone to freeze; use --mode inference.")
            trainable = [m for n, m in model.named_children() if n not in ("backbone", "transform")]
            freeze_except(model, trainable)
            self.detection_classes = detection_num_classes(model)
        else:
            torch.manual_seed(seed)
            replace_head(model, type(model).__name__, config.num_classes)
        self.model, self.forward = _placed(model, config, device, span)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        # On CUDA the fused SGD takes the GradScaler's inf check as a device tensor; the plain one makes
        # GradScaler.step read it on the host (.item()), a synchronisation every step.
        fused = bool(parameters) and all(p.is_cuda for p in parameters)
        self.optimizer = torch.optim.SGD(
            parameters, lr=config.learning_rate, momentum=0.9, fused=True if fused else None
        )
        self.scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
        self.generator = torch.Generator().manual_seed(seed)

    def _labels(self, count: int, height: int, width: int) -> torch.Tensor:
        shape = (count, height, width) if self.task == "segmentation" else (count,)
        labels = torch.randint(0, self.num_classes, shape, generator=self.generator)
        return self._to_device(labels)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Virtual labels and targets are made on the host (the same for every device); to a GPU they go from
        pinned memory without blocking: a copy from pageable memory would make the host wait every step."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _targets(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        targets = []
        for image in images:
            height, width = int(image.shape[-2]), int(image.shape[-1])
            corner = torch.rand(2, generator=self.generator) * 0.5
            size = torch.rand(2, generator=self.generator) * 0.4 + 0.1
            x0, y0 = float(corner[0]) * width, float(corner[1]) * height
            x1, y1 = x0 + float(size[0]) * width, y0 + float(size[1]) * height
            target = {
                "boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32),
                "labels": torch.randint(1, self.detection_classes, (1,), generator=self.generator),
            }
            if _has_masks(self.model):
                mask = torch.zeros(1, height, width, dtype=torch.uint8)
                mask[:, int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = 1
                target["masks"] = mask
            if _has_keypoints(self.model):
                points = torch.rand(1, 17, 3, generator=self.generator)
                points[..., 0] = x0 + points[..., 0] * (x1 - x0)
                points[..., 1] = y0 + points[..., 1] * (y1 - y0)
                points[..., 2] = 1
                target["keypoints"] = points
            targets.append({k: self._to_device(v) for k, v in target.items()})
        return targets

    def _loss(self, batch: Batch) -> tuple[Any, torch.Tensor]:
        if self.task == "detection":
            images = _as_list(batch)
            losses = self.forward(images, self._targets(images))
            return losses, sum(losses.values())
        assert isinstance(batch, torch.Tensor)
        output = self.forward(batch)
        if self.task == "segmentation":
            logits = output["out"]
            labels = self._labels(logits.shape[0], logits.shape[-2], logits.shape[-1])
        else:
            logits = getattr(output, "logits", output)  # inception/googlenet return (logits, aux) in training
            labels = self._labels(logits.shape[0], 0, 0)
        return output, nn.functional.cross_entropy(logits.float(), labels)

    def warm_up(self, batch: Batch) -> StepResult:
        """Forward and backward once, untimed, without training: no optimizer step, and BatchNorm statistics
        and the virtual-label generator are put back, so step 0 starts from the seeded state."""
        buffers = [b.detach().clone() for b in self.model.buffers()]
        labels = self.generator.get_state()
        with autocast(self.device, self.amp):
            _, loss = self._loss(batch)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        self.generator.set_state(labels)
        return StepResult(None)

    def __call__(self, batch: Batch) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            output, loss = self._loss(batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return StepResult(output, loss.detach())


def detection_num_classes(model: nn.Module) -> int:
    """Classes a torchvision detection model predicts, background included (91 for COCO models)."""
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if predictor is not None:
        return int(predictor.cls_score.out_features)
    head = getattr(getattr(model, "head", None), "classification_head", None)
    if head is not None and hasattr(head, "num_classes"):
        return int(head.num_classes)
    return 91


def _has_masks(model: nn.Module) -> bool:
    heads = getattr(model, "roi_heads", None)
    return bool(heads is not None and heads.has_mask())


def _has_keypoints(model: nn.Module) -> bool:
    heads = getattr(model, "roi_heads", None)
    return bool(heads is not None and heads.has_keypoint())


Runner = InferenceRunner | RetrainRunner


def make_runner(
    model: nn.Module, task: str, config: ModelConfig, device: torch.device, **options: Any
) -> Runner:
    """The runner for ``config.mode`` (``options``: ``seed``, ``span``, as :class:`_Runner` takes them)."""
    runner = RetrainRunner if config.mode == "retrain" else InferenceRunner
    return runner(model, task, config, device, **options)
