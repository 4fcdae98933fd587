"""framescope.run end to end, in-process, on generated inputs."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from tests.conftest import CLIP_FRAMES, DAMAGED_FRAMES, VFR_PTS_MS

import framescope
from framescope import RunConfig, load_run
from framescope.errors import DeviceError, FramescopeError
from framescope.records import SEED_COLUMNS, STAGE_COLUMNS

SMALL = "mobilenet_v3_small"


def config(out_dir: Path, input_path: str | Path, **flat: Any) -> RunConfig:
    flat.setdefault("model_name", SMALL)
    flat.setdefault("batch_size", 4)
    flat.setdefault("progress", "none")
    return RunConfig.from_flat(input_path=str(input_path), output_dir=str(out_dir), **flat)


def check_rows(rows: pd.DataFrame) -> None:
    """What every run's CSV must satisfy."""
    assert list(rows.columns[:6]) == list(SEED_COLUMNS)
    assert list(rows["step"]) == list(range(len(rows)))
    for column in ("read_latency_ms", "prep_latency_ms", "exec_latency_ms", "total_step_latency_ms"):
        assert (rows[column] > 0).all(), column
    stage_sum = rows[[c for c in STAGE_COLUMNS.values() if rows[c].notna().any()]].sum(axis=1)
    for column in ("read_latency_ms", "prep_latency_ms", "exec_latency_ms"):
        assert (rows["total_step_latency_ms"] >= rows[column]).all()
    # The loop is synchronous: stages tile the step, so they add up to (almost) all of it. One step can lose
    # more to preemption between stages on a busy machine, so the tiling is checked on the median.
    assert (rows["total_step_latency_ms"] >= stage_sum).all()
    assert (stage_sum / rows["total_step_latency_ms"]).median() > 0.95


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_run_directory_and_csv(clip: Path, out_dir: Path, decoder: str) -> None:
    result = framescope.run(config(out_dir, clip, decoder=decoder, run_name="r"))
    run_dir = out_dir / "r"
    assert result.run_dir == run_dir
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == sorted(
        ["config.yaml", "system.json", "summary.json", f"M_{SMALL}_P_{os.getpid()}_metrics.csv"]
    )

    on_disk = pd.read_csv(run_dir / f"M_{SMALL}_P_{os.getpid()}_metrics.csv")
    check_rows(on_disk)
    assert len(on_disk) == math.ceil(CLIP_FRAMES / 4)
    assert on_disk["frames"].sum() == CLIP_FRAMES  # every frame of the clip, counted independently by PyAV
    assert on_disk["loss"].isna().all()  # inference has no loss
    assert list(on_disk["warmup"]) == [1, 1] + [0] * (len(on_disk) - 2)
    assert on_disk["h2d_latency_ms"].isna().all()  # nothing crosses to a device on a CPU run

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["frames"] == CLIP_FRAMES and summary["steps"] == len(on_disk)
    assert summary["timing_method"] == "host-wall"
    assert summary["excluded_steps"]["warmup"] == 2
    steady = on_disk[on_disk["warmup"] == 0]
    assert summary["stages"]["exec_latency_ms"]["p50_ms"] == pytest.approx(
        steady["exec_latency_ms"].median(), rel=1e-3
    )
    assert summary["steady_fps"] == pytest.approx(
        steady["frames"].sum() / (steady["total_step_latency_ms"].sum() / 1000), rel=1e-3
    )

    assert RunConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text())) == result_config(result)
    system = json.loads((run_dir / "system.json").read_text())
    assert system["torch"] == torch.__version__ and system["threads"]["torch_threads"] >= 1


def result_config(result: framescope.RunResult) -> RunConfig:
    return RunConfig.from_dict(result.config)


def test_result_rows_match_the_csv_and_load_run(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip))
    again = load_run(result.run_dir)
    assert again.summary == json.loads(json.dumps(result.summary))
    pd.testing.assert_frame_equal(
        again.rows[["step", "frames", "warmup"]], result.rows[["step", "frames", "warmup"]], check_dtype=False
    )
    assert (again.rows["exec_latency_ms"] - result.rows["exec_latency_ms"]).abs().max() < 1e-3


def test_max_steps_and_short_last_batch(clip: Path, out_dir: Path) -> None:
    assert len(framescope.run(config(out_dir, clip, max_steps=3)).rows) == 3
    rows = framescope.run(config(out_dir, clip, batch_size=5)).rows
    assert list(rows["frames"]) == [5] * 7 + [1]


def test_summary_agrees_with_a_stopwatch(clip: Path, out_dir: Path) -> None:
    run = framescope.run  # imported on first use: that is not the run's time
    started = time.perf_counter()
    result = run(config(out_dir, clip))
    elapsed = time.perf_counter() - started
    summary = result.summary
    assert summary["run_time_s"] == pytest.approx(elapsed, rel=0.1, abs=0.05)
    assert summary["wall_time_s"] < elapsed
    setup = sum(summary["setup"].values())
    assert summary["wall_time_s"] + setup <= elapsed


def test_model_time_agrees_with_timing_the_model_directly(out_dir: Path) -> None:
    """The exec stage must measure the model, not framescope: time the same model on the same input
    shape by hand, in the same process, and compare medians."""
    from framescope.models import build_model

    result = framescope.run(
        config(out_dir, "synthetic:320x240", batch_size=4, max_steps=12, prep_level="simple")
    )
    model = build_model(SMALL).eval()
    x = torch.randn(4, 3, 224, 224)
    samples = []
    with torch.inference_mode():
        model(x)
        for _ in range(10):
            start = time.perf_counter()
            model(x)
            samples.append((time.perf_counter() - start) * 1000)
    direct = sorted(samples)[len(samples) // 2]
    measured = result.summary["stages"]["exec_latency_ms"]["p50_ms"]
    assert 0.5 < measured / direct < 2.0, f"exec p50 {measured:.1f} ms vs direct {direct:.1f} ms"


def test_retrain_records_the_loss(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, mode="retrain", max_steps=4, num_classes=3))
    rows = result.rows
    check_rows(rows)
    assert rows["loss"].notna().all() and (rows["loss"] > 0).all()
    assert "loss" in result.summary
    assert result.summary["model"]["trainable_parameters"] < result.summary["model"]["parameters"]


@pytest.mark.parametrize("level", ["simple", "medium", "complex"])
def test_prep_levels(out_dir: Path, level: str) -> None:
    rows = framescope.run(config(out_dir, "synthetic:160x120:8", prep_level=level)).rows
    check_rows(rows)


def test_synthetic_source_endless_until_max_steps(out_dir: Path) -> None:
    result = framescope.run(config(out_dir, "synthetic:96x64", max_steps=5, batch_size=2))
    assert len(result.rows) == 5 and result.summary["source"]["kind"] == "synthetic"


def test_image_folder_with_mixed_sizes_and_a_broken_file(image_dir: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, image_dir, batch_size=3, warmup_steps=0))
    assert list(result.rows["frames"]) == [3, 1]
    assert result.summary["frames_skipped"] == 1
    assert any("skipped" in w for w in result.summary["warnings"])


def test_variable_frame_rate_timestamps_reach_the_csv(vfr_clip: Path, out_dir: Path) -> None:
    rows = framescope.run(config(out_dir, vfr_clip, batch_size=3, decoder="pyav")).rows
    firsts = [round(v * 1000) for v in rows["first_pts_s"]]
    lasts = [round(v * 1000) for v in rows["last_pts_s"]]
    assert firsts == VFR_PTS_MS[0::3] and lasts == VFR_PTS_MS[2::3]


def test_odd_sized_frames(odd_clip: Path, out_dir: Path) -> None:
    check_rows(framescope.run(config(out_dir, odd_clip, batch_size=4)).rows)


def test_torch_profiler_trace(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, clip, torch_profile=True, profile_wait=1, profile_warmup=1, profile_active=2)
    )
    trace = result.run_dir / "torch_trace.json"
    assert result.summary["trace"] == "torch_trace.json"
    events = {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    assert {"read", "prep", "exec"} <= events
    assert list(result.rows["profiled"]) == [0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert result.summary["excluded_steps"] == {"warmup": 2, "profiled": 2}


def test_enable_profiling_environment_switch(
    clip: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_PROFILING", "1")
    result = framescope.run(config(out_dir, clip, max_steps=6))
    assert (result.run_dir / "torch_trace.json").exists()
    assert result.config["profile"]["enabled"] is True


def test_profiler_window_longer_than_the_run_is_reported(clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, clip, torch_profile=True, profile_wait=20, max_steps=3))
    assert result.summary["trace"] is None
    assert any("no torch.profiler trace" in w for w in result.summary["warnings"])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core binding is Linux-only")
def test_core_bind_sets_affinity_and_threads_then_restores_them(clip: Path, out_dir: Path) -> None:
    before = (os.sched_getaffinity(0), torch.get_num_threads())
    seen: dict[str, Any] = {}

    class Spy(framescope.RunObserver):
        def on_step(self, row: dict[str, Any]) -> None:
            seen.setdefault("affinity", os.sched_getaffinity(0))
            seen.setdefault("threads", torch.get_num_threads())

    result = framescope.run(config(out_dir, clip, core_bind="0", max_steps=2), observer=Spy())
    assert seen == {"affinity": {0}, "threads": 1}
    assert result.summary["threads"]["cores"] == [0] and result.summary["threads"]["torch"] == 1
    assert json.loads((result.run_dir / "system.json").read_text())["affinity"] == [0]
    assert (os.sched_getaffinity(0), torch.get_num_threads()) == before


def test_cpu_amp(clip: Path, out_dir: Path) -> None:
    check_rows(framescope.run(config(out_dir, clip, use_amp=True, max_steps=3)).rows)


def test_user_weights_are_used(tmp_path: Path, out_dir: Path) -> None:
    from framescope.models import build_model

    path = tmp_path / "w.pt"
    torch.save(build_model(SMALL, seed=5).state_dict(), path)
    result = framescope.run(config(out_dir, "synthetic:64x64:4", weights=str(path)))
    assert result.status == "complete" and result.config["model"]["weights"] == str(path)


def test_detection_model(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, clip, model_name="ssdlite320_mobilenet_v3_large", batch_size=2, max_steps=3)
    )
    check_rows(result.rows)
    assert result.summary["model"]["task"] == "detection"


def test_segmentation_model(out_dir: Path) -> None:
    result = framescope.run(
        config(out_dir, "synthetic:160x120:2", model_name="lraspp_mobilenet_v3_large", batch_size=2)
    )
    check_rows(result.rows)


def test_gpu_flags_without_cuda_are_errors_not_fallbacks(clip: Path, out_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for flag in ("infer_on_gpu", "prep_on_gpu"):
        with pytest.raises(DeviceError, match=f"--{flag.replace('_', '-')} needs a CUDA GPU"):
            framescope.run(config(out_dir, clip, **{flag: True}))
    assert not out_dir.exists()  # nothing was created for a run that could not start


def test_failures_before_the_loop_leave_no_run_directory(tmp_path: Path, out_dir: Path) -> None:
    with pytest.raises(FramescopeError):
        framescope.run(config(out_dir, tmp_path / "missing.mp4", run_name="x"))
    assert not (out_dir / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_name", "batch_size"),
    [
        ("resnet50", 2),
        ("vit_b_16", 1),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", 2),
        ("retinanet_resnet50_fpn", 1),
    ],
)
def test_larger_models(clip: Path, out_dir: Path, model_name: str, batch_size: int) -> None:
    result = framescope.run(config(out_dir, clip, model_name=model_name, batch_size=batch_size, max_steps=2))
    check_rows(result.rows)


@pytest.mark.slow
def test_retrain_detection_end_to_end(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        config(
            out_dir,
            clip,
            model_name="ssdlite320_mobilenet_v3_large",
            mode="retrain",
            batch_size=2,
            max_steps=3,
        )
    )
    assert (result.rows["loss"] > 0).all()


@pytest.mark.slow
@pytest.mark.keeps_torch_worker_threads
def test_torch_compile_with_inductor(out_dir: Path) -> None:
    result = framescope.run(
        config(
            out_dir, "synthetic:64x64", model_name="resnet18", enable_compile=True, max_steps=4, batch_size=2
        )
    )
    check_rows(result.rows)
    # compilation happens in the untimed warm-up, not in the recorded steps
    assert result.summary["setup"]["warmup_s"] * 1000 > result.rows["exec_latency_ms"].max()


@pytest.fixture
def stalling_stream(media: Path) -> Any:
    """An HTTP stream that sends the first part of a clip, then keeps the connection open and goes silent;
    reconnecting gets nothing at all."""
    import http.server
    import threading

    from framescope.sources import write_clip

    data = write_clip(media / "long.ts", width=160, height=120, frames=150, fps=30).read_bytes()
    release = threading.Event()
    connections: list[int] = []

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connections.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if len(connections) == 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            release.wait(30)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/long.ts"
    release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_a_stream_that_stalls_mid_run_fails_cleanly_and_keeps_its_rows(
    stalling_stream: str, out_dir: Path, decoder: str
) -> None:
    """The stream stalls; reconnecting gets nothing; after --reconnect-for the run gives up with one clear
    error, and the frames that did arrive are measured and on disk."""
    from framescope.errors import SourceError

    started = time.monotonic()
    with pytest.raises(
        SourceError, match=r"is gone: no frames for \d+ s after 0 reconnect\(s\) .*--reconnect-for"
    ):
        framescope.run(
            config(
                out_dir, stalling_stream, decoder=decoder, read_timeout=1, open_timeout=1, reconnect_for=3,
                run_name="stalled", batch_size=8,
            )
        )  # fmt: skip
    assert time.monotonic() - started < 30
    run = load_run(out_dir / "stalled")
    assert run.status == "failed" and "is gone" in run.summary["error"]
    # a burst the model cannot keep up with overflows the buffer: the newest batch is kept, not all of it
    assert len(run.rows) >= 1 and run.summary["steps"] == len(run.rows)
    assert run.rows["frames"].sum() + run.rows["dropped_frames"].sum() >= 8


def test_an_input_that_ends_early_is_a_warning_in_the_summary(damaged_clip: Path, out_dir: Path) -> None:
    """OpenCV stops at the damage as if the file had ended; the run says so instead of looking complete."""
    result = framescope.run(config(out_dir, damaged_clip, decoder="opencv"))
    shortfall = result.summary["input_shortfall"]
    assert shortfall is not None and shortfall["frames_expected"] == DAMAGED_FRAMES
    assert shortfall["frames_read"] == result.summary["frames"] < 0.9 * DAMAGED_FRAMES
    assert any(
        w.startswith(f"the input ended after {shortfall['frames_read']} of the")
        for w in result.summary["warnings"]
    )
    on_disk = json.loads((result.run_dir / "summary.json").read_text())
    assert on_disk["input_shortfall"] == shortfall
    # PyAV reads past the damage: skipped packets, no early end
    result = framescope.run(config(out_dir, damaged_clip, decoder="pyav"))
    assert result.summary["input_shortfall"] is None and result.summary["frames_skipped"] > 0


def test_stopping_early_on_purpose_is_no_shortfall(damaged_clip: Path, out_dir: Path) -> None:
    result = framescope.run(config(out_dir, damaged_clip, decoder="opencv", max_steps=2))
    assert result.summary["input_shortfall"] is None


def test_a_run_that_measured_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch, clip: Path, out_dir: Path
) -> None:
    from framescope.sources import make_source

    def silent_source(*args: Any, **kw: Any) -> Any:
        source = make_source(*args, **kw)
        source.read = lambda: None  # opens fine, then delivers nothing
        return source

    monkeypatch.setattr("framescope._run.make_source", silent_source)
    with pytest.raises(FramescopeError, match=r"delivered no frame .*nothing was measured") as error:
        framescope.run(config(out_dir, clip, run_name="nothing"))
    assert error.value.exit_code == 2
    summary = json.loads((out_dir / "nothing" / "summary.json").read_text())
    assert (
        summary["status"] == "failed" and summary["steps"] == 0 and "delivered no frame" in summary["error"]
    )
