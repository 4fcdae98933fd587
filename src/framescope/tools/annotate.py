"""``framescope annotate``: run a detection model over a folder of images, draw the boxes it finds, and
write them as one COCO-format JSON, so the output is a usable dataset."""

from __future__ import annotations

import colorsys
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from framescope._cv2 import import_cv2
from framescope.config import AnnotateConfig, ModelConfig
from framescope.errors import ConfigError, DeviceError, OutputError, SourceError
from framescope.models import build_model, detection_num_classes, make_runner, task_of
from framescope.postprocess import make_postprocess
from framescope.records import ensure_writable_dir
from framescope.sources import list_images, read_image

COCO_FILE = "annotations.json"
_UNNAMED = ("__background__", "N/A")


@dataclass
class AnnotateResult:
    output_dir: Path
    coco_path: Path
    images: int = 0
    boxes: int = 0
    skipped: list[str] = field(default_factory=list)
    """Input files that could not be read as images (relative paths)."""
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} needs a CUDA GPU, but torch sees none; pass --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s); pass cuda:0 or cpu."
            )
    return device


def category_names(model_name: str, num_classes: int) -> list[str]:
    """Label index -> name, from the weights' metadata (COCO for most models); ``class_K`` beyond it."""
    from torchvision.models import get_model_weights

    names = list(get_model_weights(model_name).DEFAULT.meta.get("categories", []))
    return [names[k] if k < len(names) else f"class_{k}" for k in range(max(num_classes, len(names)))]


def colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per category (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


class CocoBuilder:
    """Accumulates images and detections in COCO's object-detection format."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        return image_id

    def add_detections(
        self, image_id: int, boxes: list[list[float]], scores: list[float], labels: list[int]
    ) -> None:
        for (x0, y0, x1, y1), score, label in zip(boxes, scores, labels, strict=True):
            width, height = round(x1 - x0, 2), round(y1 - y0, 2)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [round(x0, 2), round(y0, 2), width, height],
                    "area": round(width * height, 2),
                    "iscrowd": 0,
                    "score": round(float(score), 4),
                }
            )

    def document(self, info: dict[str, Any]) -> dict[str, Any]:
        """The COCO document. Categories are the model's named classes, plus any id a detection used that has
        no name (COCO leaves gaps such as 12 "N/A"; an untrained model can predict them), so every
        ``category_id`` resolves."""
        used = {a["category_id"] for a in self.annotations}
        categories = [
            {"id": k, "name": name if name not in _UNNAMED else f"unnamed_{k}", "supercategory": "object"}
            for k, name in enumerate(self.names)
            if name not in _UNNAMED or k in used
        ]
        return {
            "info": info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        }


def draw(
    image: torch.Tensor, boxes: torch.Tensor, scores: list[float], labels: list[int], names: list[str]
) -> torch.Tensor:
    """The uint8 CHW image with each box outlined and labelled "name score"."""
    from torchvision.utils import draw_bounding_boxes

    if not labels:
        return image
    return draw_bounding_boxes(
        image,
        boxes,
        labels=[f"{names[k]} {s:.2f}" for k, s in zip(labels, scores, strict=True)],
        colors=[colour(k) for k in labels],
        width=max(2, min(image.shape[1:]) // 200),
    )


def _image_paths(config: AnnotateConfig) -> tuple[Path, list[Path]]:
    root = Path(config.input)
    if not root.is_dir():
        raise SourceError(f"-i {config.input!r} is not a directory; pass a directory of images.")
    files = list_images(root)
    if not files:
        raise SourceError(f"-i {config.input!r} has no images (.jpg, .png, ...); pass a directory of images.")
    return root, files


def annotate(
    config: AnnotateConfig, *, on_progress: Callable[[int, int], None] | None = None
) -> AnnotateResult:
    """Annotate every image under ``config.input``; ``on_progress(done, total)`` after each batch.
    Files that are not readable images are skipped and listed, never abort the run."""
    if task_of(config.model_name) != "detection":
        raise ConfigError(
            f"--model_name {config.model_name} is not a detection model; pick one such as "
            "fasterrcnn_resnet50_fpn_v2 (framescope models --task detection)."
        )
    root, files = _image_paths(config)
    device = resolve_device(config.device)
    output = Path(config.output)
    ensure_writable_dir(output, flag="-o")
    cv2 = import_cv2()

    started = time.perf_counter()
    model = build_model(config.model_name, config.weights, seed=config.seed)
    names = category_names(config.model_name, detection_num_classes(model))
    runner = make_runner(model, "detection", ModelConfig(name=config.model_name), device)
    post = make_postprocess("detection", runner.model)
    result = AnnotateResult(output_dir=output, coco_path=output / COCO_FILE)
    coco = CocoBuilder(names)
    for first in range(0, len(files), config.batch_size):
        relatives: list[Path] = []
        images: list[torch.Tensor] = []
        for path in files[first : first + config.batch_size]:
            rgb = read_image(path)
            if rgb is None:
                result.skipped.append(path.relative_to(root).as_posix())
                continue
            relatives.append(path.relative_to(root))
            images.append(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
        if images:
            raw = runner([image.to(device).float().div_(255) for image in images]).output
            with torch.inference_mode():
                detections = post(raw)
            for relative, image, found in zip(relatives, images, detections, strict=True):
                keep = found["scores"] >= config.threshold
                boxes = found["boxes"][keep].cpu()
                scores, labels = found["scores"][keep].cpu().tolist(), found["labels"][keep].cpu().tolist()
                image_id = coco.add_image(relative.as_posix(), width=image.shape[2], height=image.shape[1])
                coco.add_detections(image_id, boxes.tolist(), scores, labels)
                drawn = draw(image, boxes, scores, labels, names)
                target = output / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(
                    str(target), cv2.cvtColor(drawn.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
                ):
                    raise OutputError(f"could not write {target}; check free space and permissions of -o.")
                result.images += 1
                result.boxes += len(labels)
        if on_progress is not None:
            on_progress(min(first + config.batch_size, len(files)), len(files))
    info = {
        "description": f"framescope annotate: {config.model_name}, score >= {config.threshold}",
        "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": config.model_name,
        "weights": config.weights,
        "threshold": config.threshold,
        "skipped_files": result.skipped,
    }
    result.coco_path.write_text(json.dumps(coco.document(info), indent=1) + "\n")
    result.seconds = time.perf_counter() - started
    return result
