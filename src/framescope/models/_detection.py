"""Detection models run in two stages: the network up to its raw head outputs (the ``exec`` stage), and the
post-processing that turns them into boxes (box decoding, score filtering, NMS, max detections; the ``post``
stage). torchvision's detection models do both inside ``forward``; this module runs the first half of each
family's eval-mode forward, exactly as torchvision writes it, and stops before post-processing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from framescope.models._move import move, to_host

FAMILIES = ("ssd", "retinanet", "fcos", "rcnn")


def detection_family(model: nn.Module) -> str:
    """Which forward a torchvision detection model uses."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    for kind, name in ((SSD, "ssd"), (RetinaNet, "retinanet"), (FCOS, "fcos"), (GeneralizedRCNN, "rcnn")):
        if isinstance(model, kind):
            return name
    raise TypeError(f"{type(model).__name__} is not a torchvision detection model")


@dataclass
class RawDetections:
    """A batch's raw head outputs, before box decoding, score filtering and NMS."""

    family: str
    outputs: dict[str, Any]
    """Head outputs and whatever post-processing needs (anchors, proposals, features for mask heads)."""
    image_sizes: list[tuple[int, int]]
    """Sizes the model saw (after its own resize)."""
    original_sizes: list[tuple[int, int]]
    """Sizes of the images as given, which boxes are mapped back to."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def to(self, device: torch.device, *, non_blocking: bool = False) -> RawDetections:
        """On ``device``. To the host the copies always complete before this returns (the host reads them
        next); to a device they may stay in flight with ``non_blocking`` (the stream orders them)."""
        if device.type == "cpu":
            return self.map_tensors(to_host)
        outputs = move(self.outputs, device, non_blocking=non_blocking)
        return RawDetections(self.family, outputs, self.image_sizes, self.original_sizes, device)

    def map_tensors(self, function: Callable[[Any], Any]) -> RawDetections:
        """The same detections with ``function`` applied to the outputs (for :func:`to_host`)."""
        outputs = function(self.outputs)
        device = _device_of(outputs) or self.device
        return RawDetections(self.family, outputs, self.image_sizes, self.original_sizes, device)


def _device_of(value: Any) -> torch.device | None:
    if isinstance(value, Tensor):
        return value.device
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found = _device_of(item)
        if found is not None:
            return found
    return None


def _features(model: Any, images: Any) -> Any:
    features = model.backbone(images.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    return features


def forward_raw(model: Any, images: list[Tensor], family: str | None = None) -> RawDetections:
    """The eval-mode forward of ``model`` (a torchvision detection model; its internals are dynamic
    attributes, hence ``Any``) up to, not including, post-processing."""
    family = family or detection_family(model)
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    transformed, _ = model.transform(images, None)
    features = _features(model, transformed)
    outputs: dict[str, Any]
    if family == "rcnn":
        proposals, _ = model.rpn(transformed, features, None)
        heads = model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, transformed.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        outputs = {"class_logits": class_logits, "box_regression": box_regression, "proposals": proposals}
        if heads.has_mask() or heads.has_keypoint():
            outputs["features"] = features  # the mask / keypoint heads run on the boxes NMS keeps
    else:
        feature_list = list(features.values())
        head_outputs = model.head(feature_list)
        anchors = model.anchor_generator(transformed, feature_list)
        outputs = {"head": head_outputs, "anchors": anchors}
        if family in ("retinanet", "fcos"):
            per_level = [x.size(2) * x.size(3) for x in feature_list]
            if family == "retinanet":  # RetinaNet has A anchors per location
                per_location = head_outputs["cls_logits"].size(1) // sum(per_level)
                per_level = [n * per_location for n in per_level]
            outputs["head"] = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
            outputs["anchors"] = [list(a.split(per_level)) for a in anchors]
    device = next(model.parameters()).device
    return RawDetections(family, outputs, list(transformed.image_sizes), original_sizes, device)
