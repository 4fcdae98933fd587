"""GPU paths. Run on a GPU machine with ``pytest -m gpu`` (or ``make test-gpu``); they skip elsewhere."""

from __future__ import annotations

import time
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
    assert rows["d2h_latency_ms"].isna().all()
    assert (rows["exec_latency_ms"] > 0).all()
    stages = rows[["read_latency_ms", "h2d_latency_ms", "prep_latency_ms", "exec_latency_ms"]].sum(axis=1)
    assert (rows["total_step_latency_ms"] >= stages).all()
    assert result.summary["stages"]["h2d_latency_ms"]["count"] > 0


def test_prep_on_gpu_copies_the_raw_uint8_batch(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, infer_on_gpu=True, prep_on_gpu=True))
    assert (result.rows["h2d_latency_ms"] > 0).all()
    assert result.rows["d2h_latency_ms"].isna().all()


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
