"""Post-processing: turning a model's raw output into results, on whatever device that output is on.

* classification: softmax and the top 5 classes;
* detection: box decoding, score filtering, NMS and the detection cap. SSD models use one batched NMS over
  every candidate of every image in the batch (the per-class, per-image loop torchvision runs is what made the
  seed article's CPU post-processing slow); RetinaNet, FCOS and the R-CNN family use torchvision's own
  post-processing, which NMSes each image with its classes batched;
* segmentation: the per-pixel argmax, as a uint8 class map.

Results come back to the host in two bulk transfers (:func:`results_to_host`), not tensor by tensor, and
without blocking the host. With ``--use-amp`` post-processing runs under the model's autocast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from framescope.models import RawDetections, amp_dtype, detection_family

TOP_K = 5
Results = Any
"""Classification: {"scores", "labels"} of shape N x 5; detection: one {"boxes", "scores", "labels"} per
image; segmentation: an N x H x W uint8 class map."""


def classification_post(logits: Tensor) -> dict[str, Tensor]:
    scores, labels = torch.softmax(logits.float(), dim=-1).topk(min(TOP_K, logits.shape[-1]), dim=-1)
    return {"scores": scores, "labels": labels}


def segmentation_post(output: dict[str, Tensor]) -> Tensor:
    return output["out"].argmax(dim=1).to(torch.uint8)


def _clip(boxes: Tensor, sizes: list[tuple[int, int]]) -> Tensor:
    """Clip N x A x 4 boxes to per-image (height, width) ``sizes``. One size for the whole batch (SSD resizes
    every image to its fixed input) clamps with numbers; otherwise the sizes travel to the device from pinned
    memory, without a blocking copy."""
    if len(set(sizes)) == 1:
        (height, width), *_ = sizes
        x = boxes[..., 0::2].clamp(min=0, max=width)
        y = boxes[..., 1::2].clamp(min=0, max=height)
        return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
    limits = torch.tensor(sizes, dtype=boxes.dtype)
    if boxes.is_cuda:
        limits = limits.pin_memory().to(boxes.device, non_blocking=True)
    heights, widths = limits[:, 0].view(-1, 1, 1), limits[:, 1].view(-1, 1, 1)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), widths)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), heights)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group (an image and class), in one call: boxes of different groups are shifted apart
    so that they never overlap. The shifts are computed in float64: a batch of N images x 90 classes makes
    group ids up to N * 90, and offsets of that many box widths in float32 leave ~0.1 pixel of precision,
    enough to change which boxes survive. (torchvision's ``batched_nms`` shifts in the boxes' own float32,
    and on CUDA switches to a per-class loop with thousands of host syncs above its size threshold.)
    Returns the kept indices by decreasing score."""
    from torchvision.ops import nms

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    wide = boxes.to(torch.float64)
    span = wide.max() - wide.min() + 1  # stays on the device: no host read of the extent
    shifted = wide + (groups.to(torch.float64) * span)[:, None]
    return nms(shifted, scores.to(torch.float64), iou_threshold)


def ssd_post_batched(model: Any, raw: RawDetections) -> list[dict[str, Tensor]]:
    """SSD post-processing for the whole batch at once, equal to torchvision's per-image loop."""
    head, anchors = raw.outputs["head"], raw.outputs["anchors"]
    regression = head["bbox_regression"]
    scores = torch.softmax(head["cls_logits"], dim=-1)[..., 1:]  # drop the background class
    images, count, classes = scores.shape
    device = scores.device
    boxes = model.box_coder.decode_single(regression.reshape(-1, 4), torch.cat(anchors)).reshape(
        images, count, 4
    )
    boxes = _clip(boxes, raw.image_sizes)
    k = min(int(model.topk_candidates), count)
    top_scores, top_anchor = scores.transpose(1, 2).topk(k, dim=-1)  # images x classes x k
    keep = top_scores > model.score_thresh
    image_ids = torch.arange(images, device=device).view(-1, 1, 1).expand_as(top_anchor)[keep]
    class_ids = torch.arange(classes, device=device).view(1, -1, 1).expand_as(top_anchor)[keep]
    candidate_boxes = boxes[image_ids, top_anchor[keep]]
    candidate_scores = top_scores[keep]
    kept = grouped_nms(candidate_boxes, candidate_scores, image_ids * classes + class_ids, model.nms_thresh)
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


def make_postprocess(task: str, model: nn.Module, *, amp: bool = False) -> Callable[[Any], Results]:
    """The post stage for ``task``: raw model output in, results out, on the output's device. With ``amp`` it
    runs under the same autocast as the model's forward, as torchvision's own forward runs its
    post-processing: on CUDA, autocast computes the softmax and the box decoding's ``exp`` in float32 from
    float16 head outputs, and the scores equal the model's own."""
    if task == "classification":
        post: Callable[[Any], Results] = classification_post
    elif task == "segmentation":
        post = segmentation_post
    else:
        detection_family(model)  # a clear TypeError for anything else
        post = functools.partial(detection_post, model)
    return functools.partial(_under_autocast, post) if amp else post


def _under_autocast(post: Callable[[Any], Results], output: Any) -> Results:
    device = _output_device(output)
    with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):
        return post(output)


def _output_device(output: Any) -> torch.device:
    if isinstance(output, Tensor):
        return output.device
    if isinstance(output, RawDetections):
        return output.device
    if isinstance(output, dict):
        return _output_device(next(iter(output.values())))
    return torch.device("cpu")


def results_to_host(results: Results, *, wait: bool = True) -> Results:
    """Move results to the CPU in few transfers (detections of all images packed together), each issued
    without blocking. With ``wait`` (the default) the host waits for them before returning; the pipeline
    passes ``wait=False``: nothing on the host reads the results within the step, and the step's row is
    written only once its device work, these copies included, is done."""
    host = _results_to_host(results)
    if wait and _any_cuda(results):
        torch.cuda.current_stream().synchronize()
    return host


def _any_cuda(results: Results) -> bool:
    if isinstance(results, Tensor):
        return results.is_cuda
    if isinstance(results, dict):
        return any(_any_cuda(v) for v in results.values())
    return bool(results) and any(_any_cuda(r) for r in results)


def _copy(tensor: Tensor) -> Tensor:
    return tensor.to("cpu", non_blocking=True)


def _results_to_host(results: Results) -> Results:
    if isinstance(results, Tensor):
        return _copy(results) if results.is_cuda else results
    if isinstance(results, dict):
        if not results["scores"].is_cuda:
            return results
        return {"scores": _copy(results["scores"]), "labels": _copy(results["labels"])}
    if not results or not results[0]["scores"].is_cuda:
        return results
    if any(set(r) - {"boxes", "scores", "labels"} for r in results):  # masks, keypoints: ragged
        return [{key: _copy(value) for key, value in r.items()} for r in results]
    counts = [int(r["scores"].shape[0]) for r in results]  # shapes are known on the host: no sync
    boxes_scores = _copy(torch.cat([torch.cat([r["boxes"], r["scores"][:, None]], dim=1) for r in results]))
    labels = _copy(torch.cat([r["labels"] for r in results]))
    # views only: nothing here reads the host buffers before the copies are done
    return [
        {"boxes": part[:, :4], "scores": part[:, 4], "labels": part_labels}
        for part, part_labels in zip(boxes_scores.split(counts), labels.split(counts), strict=True)
    ]
