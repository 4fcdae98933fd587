"""GPU paths. Run on a GPU machine with ``pytest -m gpu`` (or ``make test-gpu``); they skip elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import framescope
from framescope import RunConfig
from framescope.config import ModelConfig
from framescope.models import build_model, make_runner
from framescope.preprocess import InputSpec, Preprocessor

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def config(out_dir: Path, input_path: str | Path, **flat: Any) -> RunConfig:
    flat.setdefault("model_name", "resnet18")
    flat.setdefault("batch_size", 4)
    flat.setdefault("progress", "none")
    return RunConfig.from_flat(input_path=str(input_path), output_dir=str(out_dir), **flat)


def test_inference_on_gpu_times_the_device_and_the_copy(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, infer_on_gpu=True))
    rows = result.rows
    assert result.summary["timing_method"] == "cuda-sync"
    assert result.summary["model"]["device"] == "cuda"
    assert (rows["h2d_latency_ms"] > 0).all()
    assert (rows["d2h_latency_ms"] > 0).all()  # the default placement post-processes on the CPU
    assert (rows["exec_latency_ms"] > 0).all()
    stages = rows[["read_latency_ms", "h2d_latency_ms", "prep_latency_ms", "exec_latency_ms"]].sum(axis=1)
    assert (rows["total_step_latency_ms"] >= stages).all()
    assert result.summary["stages"]["h2d_latency_ms"]["count"] > 0


def test_prep_on_gpu_copies_the_raw_uint8_batch(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, infer_on_gpu=True, prep_on_gpu=True))
    assert (result.rows["h2d_latency_ms"] > 0).all()
    assert (result.rows["d2h_latency_ms"] > 0).all()  # the logits, to the CPU post-processing
    with_post = framescope.run(config(out_dir, clip, infer_on_gpu=True, prep_on_gpu=True, post_on_gpu=True))
    assert (with_post.rows["d2h_latency_ms"] > 0).all()  # the results, after post-processing on the GPU


def test_prep_on_gpu_feeding_a_cpu_model_copies_back(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, prep_on_gpu=True, max_steps=3))
    assert (result.rows["h2d_latency_ms"] > 0).all()
    assert (result.rows["d2h_latency_ms"] > 0).all()


@pytest.mark.parametrize("level", ["simple", "medium"])
def test_preprocessing_is_the_same_on_cpu_and_gpu(level: str) -> None:
    spec = InputSpec("classification", (224, 224), resize=256)
    frames = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8)
    on_cpu = Preprocessor(level, spec)(frames)
    on_gpu = Preprocessor(level, spec)(frames.to(CUDA))
    assert isinstance(on_cpu, torch.Tensor) and isinstance(on_gpu, torch.Tensor)
    assert on_gpu.is_cuda
    assert torch.allclose(on_cpu, on_gpu.cpu(), atol=2e-2)


def test_fp16_amp_on_cuda() -> None:
    model = build_model("resnet18")
    runner = make_runner(model, "classification", ModelConfig(name="resnet18", amp=True), CUDA)
    out = runner(torch.randn(2, 3, 224, 224, device=CUDA)).output
    assert out.dtype == torch.float16


def test_retrain_with_grad_scaler(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, clip, infer_on_gpu=True, use_amp=True, mode="retrain", max_steps=4)
    )
    assert (result.rows["loss"] > 0).all()


def test_exec_time_is_device_time(out_dir: Path) -> None:
    """Compare the exec stage with CUDA events around the same model on the same input shape."""
    result = framescope.run(
        config(
            out_dir,
            "synthetic:320x240",
            model_name="resnet50",
            batch_size=16,
            max_steps=12,
            infer_on_gpu=True,
        )
    )
    model = build_model("resnet50").eval().to(CUDA)
    x = torch.randn(16, 3, 224, 224, device=CUDA)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        for _ in range(10):
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
    direct = sorted(samples)[len(samples) // 2]
    measured = result.summary["stages"]["exec_latency_ms"]["p50_ms"]
    assert 0.5 < measured / direct < 2.0, f"exec p50 {measured:.2f} ms vs CUDA events {direct:.2f} ms"


def test_system_json_names_the_gpu(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, infer_on_gpu=True, max_steps=2))
    gpus = result.system["gpus"]
    assert gpus and gpus[0]["name"] == torch.cuda.get_device_name(0)
    assert result.system["cuda_version"] == torch.version.cuda


def test_compile_and_amp_on_gpu(out_dir: Path) -> None:
    started = time.perf_counter()
    result = framescope.run(
        config(
            out_dir, "synthetic:320x240", enable_compile=True, use_amp=True, infer_on_gpu=True, max_steps=6
        )
    )
    assert result.status == "complete"
    assert result.summary["setup"]["warmup_s"] < time.perf_counter() - started


def test_async_on_gpu_times_device_stages_with_events(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, clip, infer_on_gpu=True, prep_on_gpu=True, pipeline="async", post_on_gpu=True)
    )
    rows = result.rows
    assert result.summary["timing_method"] == "cuda-events"
    for column in (
        "h2d_latency_ms",
        "prep_latency_ms",
        "exec_latency_ms",
        "post_latency_ms",
        "d2h_latency_ms",
    ):
        assert (rows[column] > 0).all(), column
    assert rows["queue_wait_ms"].notna().all()
    assert rows["frames"].sum() == 36


def test_async_and_sync_agree_on_the_models_device_time(out_dir: Path) -> None:
    """CUDA events (async) and synchronised host timing (sync) measure the same kernels."""
    results = {
        pipeline: framescope.run(
            config(out_dir, "synthetic:640x480", model_name="resnet50", batch_size=16, max_steps=12,
                   infer_on_gpu=True, pipeline=pipeline)
        ).summary["stages"]["exec_latency_ms"]["p50_ms"]
        for pipeline in ("sync", "async")
    }  # fmt: skip
    assert 0.7 < results["async"] / results["sync"] < 1.4, results


def test_async_retrain_on_gpu_reads_the_loss_late(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, clip, infer_on_gpu=True, mode="retrain", pipeline="async", max_steps=5)
    )
    assert (result.rows["loss"] > 0).all()


# --- defects found by reading the CUDA paths: each test fails on the defect it names -----------------------


@pytest.fixture
def deterministic() -> Iterator[None]:
    """cuDNN picks deterministic kernels, so two runs of one model on one input agree to the bit."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _detection_rows(result: dict[str, torch.Tensor]) -> list[tuple[float, ...]]:
    return sorted(
        (round(float(s), 4), int(c), *(round(float(v), 2) for v in b))
        for s, c, b in zip(result["scores"], result["labels"], result["boxes"], strict=True)
    )


def _capture_post(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Every batch's detections as the post stage returned them (on the CPU in the default placement)."""
    import framescope.postprocess as post

    captured: list[list[Any]] = []
    original = post.detection_post

    def recording(model: Any, raw: Any) -> Any:
        results = original(model, raw)
        captured.append([_detection_rows(r) for r in results])
        return results

    monkeypatch.setattr(post, "detection_post", recording)
    return captured


def test_async_and_sync_detections_agree_with_post_on_the_cpu(
    clip: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch, deterministic: None
) -> None:
    """Defect 1: the raw outputs' copy to the host returned before it was done, and the CPU post stage read
    half-written buffers in the async pipeline (sync hid it: its spans synchronise)."""
    captured = _capture_post(monkeypatch)
    by_pipeline = {}
    for pipeline in ("sync", "async"):
        captured.clear()
        framescope.run(
            config(
                out_dir, clip, model_name="ssd300_vgg16", infer_on_gpu=True, pipeline=pipeline, batch_size=4
            )
        )
        by_pipeline[pipeline] = list(captured)
    assert len(by_pipeline["sync"]) == len(by_pipeline["async"]) > 5
    assert by_pipeline["sync"] == by_pipeline["async"]


def _checksums(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sum of every batch the preprocessing sees, in order."""
    from framescope.preprocess import Preprocessor

    sums: list[float] = []
    original = Preprocessor.__call__

    def recording(self: Preprocessor, batch: Any) -> Any:
        sums.append(float(batch.double().sum()))  # a sync, on the producer's stream only
        return original(self, batch)

    monkeypatch.setattr(Preprocessor, "__call__", recording)
    return sums


def test_gpu_decoded_batches_are_complete_when_preprocessed(
    clip: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: frames NVDEC decoded on the default stream were preprocessed on the producer's stream, which
    did not wait for them. Per-batch checksums must equal the sync pipeline's."""
    from tests.conftest import needs_system_dependency
    from tests.test_decode import torchcodec_works

    needs_system_dependency(torchcodec_works(), "torchcodec with FFmpeg's shared libraries")
    sums = _checksums(monkeypatch)
    by_pipeline = {}
    for pipeline in ("sync", "async"):
        sums.clear()
        framescope.run(
            config(out_dir, clip, decoder="torchcodec", decode_on_gpu=True, prep_on_gpu=True,
                   infer_on_gpu=True, pipeline=pipeline)
        )  # fmt: skip
        by_pipeline[pipeline] = sums[1:]  # the first is the warm-up's zero batch
    assert by_pipeline["sync"] == by_pipeline["async"]


def test_batches_are_not_overwritten_while_the_model_reads_them() -> None:
    """Defect 3: tensors made on the producer's stream were used on the model's stream without being handed
    over (record_stream), so the caching allocator could give their memory to the next batch's copy while a
    slow model still read it. Prefetch 2, large batches, a model that sleeps on the GPU before reading its
    input: the model's checksum of each batch must equal the producer's."""
    from tests.conftest import collecting_loop

    from framescope.models import StepResult
    from framescope.pipeline import PlannedStage, StepPlan, run_async
    from framescope.sources import SyntheticSource

    made: list[torch.Tensor] = []
    read: list[torch.Tensor] = []

    def prep(batch: torch.Tensor) -> torch.Tensor:
        out = batch.float() / 255
        made.append(out.sum())
        return out

    def model(batch: torch.Tensor) -> StepResult:
        torch.cuda._sleep(50_000_000)  # ~tens of ms on the GPU before the input is read
        read.append(batch.sum())
        return StepResult(batch.mean())

    source = SyntheticSource(1280, 720, 40 * 16)
    source.open()
    plan = StepPlan(
        [
            PlannedStage("h2d", lambda b: b, device=CUDA),
            PlannedStage("prep", prep, device=CUDA),
            PlannedStage("exec", model, device=CUDA),
        ]
    )
    run_async(source, plan, collecting_loop([], batch_size=16), depth=2)
    torch.cuda.synchronize()
    assert len(made) == len(read) == 40
    assert [float(m) for m in made] == [float(r) for r in read]


def test_many_candidate_nms_on_the_gpu_equals_the_models_forward(deterministic: None) -> None:
    """Defect 4: batched_nms's coordinate trick lost float32 precision at batch x 90 class ids (and above its
    size threshold it loops over classes with a host sync each). Compared with the model's own forward on
    the GPU, which NMSes each image on its own."""
    from framescope.models import forward_raw
    from framescope.postprocess import ssd_post_batched

    model = build_model("ssd300_vgg16").eval().to(CUDA)
    model.score_thresh = 0.001
    generator = torch.Generator().manual_seed(0)
    batch = [torch.rand(3, 300, 300, generator=generator).to(CUDA) for _ in range(32)]
    with torch.inference_mode():
        native = model(batch)
        batched = ssd_post_batched(model, forward_raw(model, batch))
    assert sum(len(d["scores"]) for d in native) > 5000
    for ref, got in zip(native, batched, strict=True):
        assert _detection_rows(ref) == _detection_rows(got)


def test_amp_post_processing_scores_equal_the_models_forward(deterministic: None) -> None:
    """Defect 5: post-processing ran outside autocast, so its softmax ran in float16 where the model's own
    forward (under autocast) runs it in float32."""
    from framescope.models import forward_raw
    from framescope.postprocess import make_postprocess

    model = build_model("ssd300_vgg16").eval().to(CUDA)
    model.score_thresh = 0.01
    generator = torch.Generator().manual_seed(0)
    batch = [torch.rand(3, 300, 300, generator=generator).to(CUDA) for _ in range(4)]
    post = make_postprocess("detection", model, amp=True)
    with torch.inference_mode():
        with torch.autocast("cuda", dtype=torch.float16):
            native = model(batch)
            raw = forward_raw(model, batch)
        staged = post(raw)
    for ref, got in zip(native, staged, strict=True):
        assert _detection_rows(ref) == _detection_rows(got)


class SyncDebug(framescope.RunObserver):
    """Turns CUDA's sync debug mode to 'error' once the warm-up steps are written: from then on any host
    synchronisation (a blocking copy, .item(), a pageable copy, a stream sync) raises."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.checked = 0

    def on_step(self, row: dict[str, Any]) -> None:
        if row["step"] == self.warmup_steps - 1:
            torch.cuda.set_sync_debug_mode("error")
        elif row["step"] >= self.warmup_steps:
            self.checked += 1

    def on_finish(self, result: framescope.RunResult) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    "flat",
    [
        {"prep_on_gpu": True},
        {"prep_on_gpu": True, "post_on_gpu": True},
        {"mode": "retrain"},
        {"mode": "retrain", "use_amp": True},
    ],
    ids=["post-on-cpu", "post-on-gpu", "retrain", "retrain-amp"],
)
def test_the_async_loop_never_synchronises_the_host(out_dir: Path, flat: dict[str, Any]) -> None:
    """Defect 6: labels copied from pageable memory, GradScaler.step reading its inf check with .item(),
    float(loss), torch.tensor(..., device=...) in post-processing, torchvision's Normalize building its
    mean on the GPU every call. (The CPU post-processing's wait for the model's output is an event wait,
    which this mode does not flag: the host must have the output to post-process it.)"""
    watch = SyncDebug(warmup_steps=12)  # past the thread-plan trial, which switches threads, not syncs
    try:
        result = framescope.run(
            config(out_dir, "synthetic:320x240:200", infer_on_gpu=True, pipeline="async", warmup_steps=12,
                   batch_size=4, **flat),
            observer=watch,
        )  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert result.status == "complete", result.summary["error"]
    assert watch.checked >= 30


def test_split_transfer_of_step_zero_is_one_transfer(clip: Path, out_dir: Path) -> None:
    """Defect 8: the warm-up's split transfer was recorded into the same event timer and counted in step 0."""
    result = framescope.run(
        config(out_dir, "synthetic:640x480:160", model_name="resnet50", split_point="resnet50:layer2",
               infer_on_gpu=True, pipeline="async", batch_size=8, warmup_steps=0)
    )  # fmt: skip
    transfers = result.rows["split_transfer_latency_ms"]
    assert transfers.iloc[0] < 1.6 * transfers.iloc[2:].median(), transfers.tolist()


def test_gpu_decoding_with_decode_size_auto(clip: Path, out_dir: Path) -> None:
    """Defect 10: torchcodec refuses transforms on CUDA decoders, and the run died with its traceback."""
    from tests.conftest import needs_system_dependency
    from tests.test_decode import torchcodec_works

    needs_system_dependency(torchcodec_works(), "torchcodec with FFmpeg's shared libraries")
    result = framescope.run(
        config(out_dir, clip, decoder="torchcodec", decode_on_gpu=True, decode_size="auto", infer_on_gpu=True,
               prep_level="simple")
    )  # fmt: skip
    assert result.status == "complete"
    assert result.summary["decode_size"] == [224, 224]


def test_a_clip_nvdec_cannot_decode_is_reported_as_a_fallback(media: Path, out_dir: Path) -> None:
    """Defect 11: codec_context.is_hwaccel stays true when FFmpeg falls back to software at run time, so the
    warning never fired. NVDEC does not decode H.264 4:4:4."""
    from framescope.sources import write_clip

    clip444 = write_clip(media / "h264_444.mp4", width=320, height=240, frames=24, pix_fmt="yuv444p")
    result = framescope.run(config(out_dir, clip444, decoder="pyav", decode_on_gpu=True, infer_on_gpu=True))
    assert any("fell back to CPU decoding" in w for w in result.summary["warnings"])


# --- the diagnosis of GPU runs: each finding provoked for real, read back from summary.json ---------------


def _findings(result: Any) -> dict[str, dict[str, Any]]:
    import json

    summary = json.loads((result.run_dir / "summary.json").read_text())
    return {finding["id"]: finding for finding in summary["findings"]}


def test_cpu_preprocessing_for_a_gpu_model_is_found(clip: Path, out_dir: Path) -> None:
    found = _findings(framescope.run(config(out_dir, clip, infer_on_gpu=True, prep_level="medium")))
    assert found["prep_on_cpu_for_gpu"]["overrides"] == {"prep_on_gpu": True}
    assert found["prep_on_cpu_for_gpu"]["evidence"]["prep_share"] >= 0.15
    fixed = _findings(framescope.run(config(out_dir, clip, infer_on_gpu=True, prep_on_gpu=True)))
    assert "prep_on_cpu_for_gpu" not in fixed


def test_raw_detections_copied_to_the_host_are_found(clip: Path, out_dir: Path) -> None:
    """SSD's raw outputs (8732 boxes by 91 classes a frame) copied and NMS'd on the CPU."""
    found = _findings(framescope.run(config(out_dir, clip, model_name="ssd300_vgg16", infer_on_gpu=True)))
    assert found["detections_copied_raw"]["overrides"] == {"post_on_gpu": True}
    fixed = framescope.run(
        config(out_dir, clip, model_name="ssd300_vgg16", infer_on_gpu=True, post_on_gpu=True)
    )
    assert "detections_copied_raw" not in _findings(fixed)


def test_small_batches_without_amp_or_compile_are_information(clip: Path, out_dir: Path) -> None:
    found = _findings(framescope.run(config(out_dir, clip, infer_on_gpu=True, batch_size=2)))
    assert found["gpu_small_batch"]["severity"] == "info"
    assert found["gpu_small_batch"]["overrides"] == {"batch_size": 16}
    assert found["gpu_without_amp"]["overrides"] == {"use_amp": True}
    assert found["gpu_without_compile"]["overrides"] == {"enable_compile": True}
    tuned = _findings(framescope.run(config(out_dir, clip, infer_on_gpu=True, batch_size=16, use_amp=True)))
    assert not {"gpu_small_batch", "gpu_without_amp"} & set(tuned)
