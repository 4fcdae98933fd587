"""Post-processing as its own stage: equal to what torchvision's detection models return from forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import framescope
from framescope import RunConfig
from framescope.models import build_model
from framescope.models._detection import RawDetections, forward_raw
from framescope.postprocess import (
    classification_post,
    detection_post,
    results_to_host,
    segmentation_post,
    ssd_post_batched,
)


def images(*sizes: tuple[int, int]) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    return [torch.from_numpy(rng.random((3, h, w), dtype=np.float32)) for h, w in sizes]


def as_rows(detections: dict[str, torch.Tensor]) -> list[tuple[Any, ...]]:
    """Order-free form: NMS orders equal scores arbitrarily, so results are compared as sets."""
    return sorted(
        (round(s, 5), int(c), *(round(v, 3) for v in b))
        for s, c, b in zip(
            detections["scores"].tolist(),
            detections["labels"].tolist(),
            detections["boxes"].tolist(),
            strict=True,
        )
    )


def test_batched_ssd_post_equals_torchvisions_per_image_loop() -> None:
    """ssd300's random weights give distinct scores, so the comparison is exact."""
    model = build_model("ssd300_vgg16").eval()
    batch = images((120, 160), (90, 200), (120, 160))
    with torch.inference_mode():
        raw = forward_raw(model, batch)
        reference = model.postprocess_detections(raw.outputs["head"], raw.outputs["anchors"], raw.image_sizes)
        batched = ssd_post_batched(model, raw)
    assert len(batched) == 3
    for ref, got in zip(reference, batched, strict=True):
        assert len(ref["scores"]) == len(got["scores"]) == model.detections_per_img
        assert as_rows(ref) == as_rows(got)


def tune(model: Any, name: str) -> Any:
    """Lower the score thresholds so random weights produce detections to compare (RetinaNet's random scores
    sit at its 0.01 prior)."""
    if hasattr(model, "score_thresh"):
        model.score_thresh = 0.005 if name.startswith("retinanet") else 0.05
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = 0.0
    return model


@pytest.mark.parametrize(
    "name",
    [
        "ssd300_vgg16",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        pytest.param("fcos_resnet50_fpn", marks=pytest.mark.slow),
        pytest.param("retinanet_resnet50_fpn", marks=pytest.mark.slow),
        pytest.param("maskrcnn_resnet50_fpn", marks=pytest.mark.slow),
        pytest.param("keypointrcnn_resnet50_fpn", marks=pytest.mark.slow),
    ],
)
def test_staged_forward_and_post_equal_the_models_own_forward(name: str) -> None:
    model = tune(build_model(name).eval(), name)
    batch = images((200, 260), (180, 300))
    with torch.inference_mode():
        native = model(batch)
        staged = detection_post(model, forward_raw(model, batch))
    assert any(len(d["scores"]) for d in native), "nothing to compare"
    for ref, got in zip(native, staged, strict=True):
        assert as_rows(ref) == as_rows(got)
        for key in set(ref) - {"boxes", "scores", "labels"}:  # masks, keypoints
            assert torch.allclose(ref[key].float(), got[key].float(), atol=1e-5)


def test_boxes_are_in_original_image_coordinates() -> None:
    model = build_model("ssd300_vgg16").eval()
    with torch.inference_mode():
        (result,) = detection_post(model, forward_raw(model, images((120, 400))))
    boxes = result["boxes"]
    assert float(boxes[:, 2].max()) <= 400.0 + 1e-3 and float(boxes[:, 3].max()) <= 120.0 + 1e-3
    assert float(boxes[:, 2].max()) > 300.0  # mapped back from the 300x300 model input


def test_raw_outputs_move_between_devices_as_a_whole() -> None:
    model = build_model("ssd300_vgg16").eval()
    with torch.inference_mode():
        raw = forward_raw(model, images((100, 100)))
    moved = raw.to(torch.device("cpu"))
    assert isinstance(moved, RawDetections) and moved.family == "ssd"
    assert torch.equal(moved.outputs["head"]["cls_logits"], raw.outputs["head"]["cls_logits"])


def test_classification_post_is_the_softmax_top_5() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0, 5.0, 0.5]])
    result = classification_post(logits)
    assert result["labels"].tolist() == [[5, 1, 3, 2, 6]]
    assert torch.allclose(result["scores"], torch.softmax(logits, -1)[:, [5, 1, 3, 2, 6]])


def test_segmentation_post_is_the_per_pixel_argmax() -> None:
    out = torch.zeros(1, 3, 2, 2)
    out[0, 2, 0, 0] = 1.0
    out[0, 1, 1, 1] = 1.0
    assert segmentation_post({"out": out}).tolist() == [[[2, 0], [0, 1]]]


def test_results_already_on_the_host_stay_as_they_are() -> None:
    detections = [
        {"boxes": torch.zeros(2, 4), "scores": torch.ones(2), "labels": torch.ones(2, dtype=torch.int64)}
    ]
    assert results_to_host(detections) is detections


def run(out_dir: Path, clip: Path, **flat: Any) -> framescope.RunResult:
    return framescope.run(
        RunConfig.from_flat(
            input_path=str(clip), output_dir=str(out_dir), progress="none", batch_size=2, max_steps=3, **flat
        )
    )


def test_post_is_its_own_column(clip: Path, out_dir: Path) -> None:
    for name in ("mobilenet_v3_small", "ssdlite320_mobilenet_v3_large"):
        rows = run(out_dir, clip, model_name=name).rows
        assert (rows["post_latency_ms"] > 0).all(), name
        assert rows["d2h_latency_ms"].isna().all()  # a CPU run copies nothing


def test_retrain_has_no_post_stage(clip: Path, out_dir: Path) -> None:
    rows = run(out_dir, clip, model_name="mobilenet_v3_small", mode="retrain").rows
    assert rows["post_latency_ms"].isna().all()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ssd300_vgg16", "fasterrcnn_mobilenet_v3_large_320_fpn"])
def test_post_on_gpu_agrees_with_post_on_cpu(name: str) -> None:
    model = tune(build_model(name).eval().cuda(), name)
    batch = [image.cuda() for image in images((200, 260), (180, 300))]
    with torch.inference_mode():
        raw = forward_raw(model, batch)
        on_gpu = results_to_host(detection_post(model, raw))
        model_cpu = tune(build_model(name).eval(), name)
        model_cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        on_cpu = detection_post(model_cpu, raw.to(torch.device("cpu")))
    for gpu, cpu in zip(on_gpu, on_cpu, strict=True):
        assert not gpu["boxes"].is_cuda
        assert len(gpu["scores"]) == len(cpu["scores"])
        assert torch.allclose(torch.tensor(as_rows(gpu))[:, 2:], torch.tensor(as_rows(cpu))[:, 2:], atol=1e-2)


@pytest.mark.gpu
def test_run_with_post_on_gpu_copies_only_results(clip: Path, out_dir: Path) -> None:
    result = run(out_dir, clip, model_name="ssd300_vgg16", infer_on_gpu=True, post_on_gpu=True)
    rows = result.rows
    assert (rows["post_latency_ms"] > 0).all() and (rows["d2h_latency_ms"] > 0).all()


def test_grouped_nms_keeps_its_precision_at_large_group_ids() -> None:
    """Two boxes of one group overlap with IoU just over the threshold, so the weaker is suppressed. At group
    id 5,000 (a batch of 56 images x 90 classes) shifting them apart in float32, as torchvision's batched_nms
    does, rounds their coordinates to 1/8 pixel and keeps both; grouped_nms shifts in float64."""
    from torchvision.ops import nms

    from framescope.postprocess import grouped_nms

    shift = 3.32  # IoU (10 - s) / (10 + s) = 0.5015 against a threshold of 0.5; 3.375 in float32: 0.4953
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [shift, 0.0, 10.0 + shift, 10.0], [0.0, 0.0, 300.0, 300.0]])
    scores = torch.tensor([0.9, 0.8, 0.1])
    groups = torch.tensor([5000, 5000, 0])
    assert nms(boxes[:2], scores[:2], 0.5).tolist() == [0]
    offsets = (groups.to(torch.float32) * 301.0)[:, None]
    assert 1 in nms(boxes + offsets, scores, 0.5).tolist()  # the precision loss the float64 shift avoids
    assert sorted(grouped_nms(boxes, scores, groups, 0.5).tolist()) == [0, 2]


def test_batched_ssd_post_equals_the_models_forward_on_many_candidates() -> None:
    """Eight images with a low score threshold: tens of thousands of candidates across 720 image-class
    groups, compared with the model's own per-image forward (not with the same code elsewhere)."""
    model = build_model("ssd300_vgg16").eval()
    model.score_thresh = 0.001
    batch = images(*[(120 + 10 * i, 160) for i in range(8)])
    with torch.inference_mode():
        native = model(batch)
        staged = detection_post(model, forward_raw(model, batch))
    assert sum(len(d["scores"]) for d in native) > 1000
    for ref, got in zip(native, staged, strict=True):
        assert as_rows(ref) == as_rows(got)


def test_post_processing_runs_under_the_models_autocast_with_amp() -> None:
    """torchvision's forward post-processes inside the caller's autocast (on CUDA that computes the softmax
    and box decoding in float32 from float16 outputs); framescope's post stage does the same."""
    from framescope.postprocess import make_postprocess

    seen: list[bool] = []
    model = build_model("mobilenet_v3_small").eval()

    def spy(logits: torch.Tensor) -> Any:
        seen.append(torch.is_autocast_enabled("cpu"))
        return classification_post(logits)

    import framescope.postprocess as post_module

    original = post_module.classification_post
    post_module.classification_post = spy  # type: ignore[assignment]
    try:
        make_postprocess("classification", model, amp=True)(torch.randn(2, 10))
        make_postprocess("classification", model, amp=False)(torch.randn(2, 10))
    finally:
        post_module.classification_post = original
    assert seen == [True, False]


def test_results_on_the_host_need_no_copy_and_device_results_are_copied_without_blocking() -> None:
    classification = {"scores": torch.rand(2, 5), "labels": torch.randint(0, 9, (2, 5))}
    assert results_to_host(classification, wait=False) is classification
    maps = torch.zeros(2, 4, 4, dtype=torch.uint8)
    assert results_to_host(maps) is maps
