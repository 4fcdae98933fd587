"""Post-processing: turning a model's raw output into results, on whatever device that output is on.

* classification: softmax and the top 5 classes;
* detection: box decoding, score filtering, NMS and the detection cap. SSD models use one batched NMS over
  every candidate of every image in the batch (the per-class, per-image loop torchvision runs is what made the
  seed article's CPU post-processing slow); RetinaNet, FCOS and the R-CNN family use torchvision's own
  post-processing, which NMSes each image with its classes batched;
* segmentation: the per-pixel argmax, as a uint8 class map.

Results come back to the host in one bulk transfer (:func:`results_to_host`), not tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from framescope.models._detection import RawDetections, detection_family

TOP_K = 5
Results = Any
"""Classification: {"scores", "labels"} of shape N x 5; detection: one {"boxes", "scores", "labels"} per
image; segmentation: an N x H x W uint8 class map."""


def classification_post(logits: Tensor) -> dict[str, Tensor]:
    scores, labels = torch.softmax(logits.float(), dim=-1).topk(min(TOP_K, logits.shape[-1]), dim=-1)
    return {"scores": scores, "labels": labels}


def segmentation_post(output: dict[str, Tensor]) -> Tensor:
    return output["out"].argmax(dim=1).to(torch.uint8)


def _clip(boxes: Tensor, sizes: Tensor) -> Tensor:
    """Clip N x A x 4 boxes to per-image (height, width) ``sizes`` (N x 2)."""
    height = sizes[:, 0].view(-1, 1).to(boxes.dtype)
    width = sizes[:, 1].view(-1, 1).to(boxes.dtype)
    zero = torch.zeros_like(width)
    x = boxes[..., 0::2].clamp(min=zero.unsqueeze(-1), max=width.unsqueeze(-1))
    y = boxes[..., 1::2].clamp(min=zero.unsqueeze(-1), max=height.unsqueeze(-1))
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def ssd_post_batched(model: Any, raw: RawDetections) -> list[dict[str, Tensor]]:
    """SSD post-processing for the whole batch at once, equal to torchvision's per-image loop."""
    from torchvision.ops import batched_nms

    head, anchors = raw.outputs["head"], raw.outputs["anchors"]
    regression = head["bbox_regression"]
    scores = torch.softmax(head["cls_logits"], dim=-1)[..., 1:]  # drop the background class
    images, count, classes = scores.shape
    device = scores.device
    boxes = model.box_coder.decode_single(regression.reshape(-1, 4), torch.cat(anchors)).reshape(
        images, count, 4
    )
    boxes = _clip(boxes, torch.tensor(raw.image_sizes, device=device))
    k = min(int(model.topk_candidates), count)
    top_scores, top_anchor = scores.transpose(1, 2).topk(k, dim=-1)  # images x classes x k
    keep = top_scores > model.score_thresh
    image_ids = torch.arange(images, device=device).view(-1, 1, 1).expand_as(top_anchor)[keep]
    class_ids = torch.arange(classes, device=device).view(1, -1, 1).expand_as(top_anchor)[keep]
    candidate_boxes = boxes[image_ids, top_anchor[keep]]
    candidate_scores = top_scores[keep]
    kept = batched_nms(candidate_boxes, candidate_scores, image_ids * classes + class_ids, model.nms_thresh)
    # kept is ordered by score; regroup by image (stable, so each image stays ordered) and cap each image
    kept_images = image_ids[kept]
    order = torch.sort(kept_images, stable=True).indices
    kept, kept_images = kept[order], kept_images[order]
    per_image = torch.bincount(kept_images, minlength=images)
    starts = torch.cumsum(per_image, 0) - per_image
    rank = torch.arange(kept.numel(), device=device) - starts[kept_images]
    chosen = kept[rank < model.detections_per_img]
    sizes = torch.bincount(image_ids[chosen], minlength=images).tolist()
    return [
        {"boxes": b, "scores": s, "labels": c + 1}
        for b, s, c in zip(
            candidate_boxes[chosen].split(sizes),
            candidate_scores[chosen].split(sizes),
            class_ids[chosen].split(sizes),
            strict=True,
        )
    ]


def _rcnn_post(model: Any, raw: RawDetections) -> list[dict[str, Tensor]]:
    heads = model.roi_heads
    outputs = raw.outputs
    boxes, scores, labels = heads.postprocess_detections(
        outputs["class_logits"], outputs["box_regression"], outputs["proposals"], raw.image_sizes
    )
    results = [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels, strict=True)]
    if "features" in outputs:  # Mask / Keypoint R-CNN: their heads run on the boxes NMS kept
        from torchvision.models.detection.roi_heads import keypointrcnn_inference, maskrcnn_inference

        features = outputs["features"]
        kept_boxes = [r["boxes"] for r in results]
        if heads.has_mask():
            masks = heads.mask_predictor(
                heads.mask_head(heads.mask_roi_pool(features, kept_boxes, raw.image_sizes))
            )
            for mask, result in zip(maskrcnn_inference(masks, labels), results, strict=True):
                result["masks"] = mask
        if heads.has_keypoint():
            logits = heads.keypoint_predictor(
                heads.keypoint_head(heads.keypoint_roi_pool(features, kept_boxes, raw.image_sizes))
            )
            points, point_scores = keypointrcnn_inference(logits, kept_boxes)
            for p, s, result in zip(points, point_scores, results, strict=True):
                result["keypoints"], result["keypoints_scores"] = p, s
    return results


def detection_post(model: Any, raw: RawDetections) -> list[dict[str, Tensor]]:
    """Decode, filter, NMS and cap, then map boxes back to the images' original sizes."""
    if raw.family == "ssd":
        detections = ssd_post_batched(model, raw)
    elif raw.family == "rcnn":
        detections = _rcnn_post(model, raw)
    else:
        detections = model.postprocess_detections(
            raw.outputs["head"], raw.outputs["anchors"], raw.image_sizes
        )
    return model.transform.postprocess(detections, raw.image_sizes, raw.original_sizes)


def make_postprocess(task: str, model: nn.Module) -> Callable[[Any], Results]:
    """The post stage for ``task``: raw model output in, results out, on the output's device."""
    if task == "classification":
        return classification_post
    if task == "segmentation":
        return segmentation_post
    detection_family(model)  # a clear TypeError for anything else
    return lambda raw: detection_post(model, raw)


def results_to_host(results: Results) -> Results:
    """Move results to the CPU in one transfer per result set (detections of all images packed together)."""
    if isinstance(results, Tensor):
        return results.cpu()
    if isinstance(results, dict):
        if not results["scores"].is_cuda:
            return results
        k = results["scores"].shape[-1]
        packed = torch.cat([results["scores"], results["labels"].to(torch.float32)], dim=-1).cpu()
        return {"scores": packed[:, :k], "labels": packed[:, k:].to(torch.int64)}
    if not results or not results[0]["scores"].is_cuda:
        return results
    if any(
        set(r) - {"boxes", "scores", "labels"} for r in results
    ):  # masks, keypoints: ragged, move as they are
        return [{key: value.cpu() for key, value in r.items()} for r in results]
    counts = [int(r["scores"].shape[0]) for r in results]
    packed = torch.cat(
        [
            torch.cat([r["boxes"], r["scores"][:, None], r["labels"][:, None].to(torch.float32)], dim=1)
            for r in results
        ]
    ).cpu()
    return [
        {"boxes": part[:, :4], "scores": part[:, 4], "labels": part[:, 5].to(torch.int64)}
        for part in packed.split(counts)
    ]
