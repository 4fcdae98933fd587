"""Diagnosis rules: pure functions of a run record, tested on hand-made records; the runs that provoke
them for real are in the tests of what they judge (threads, sources, the profiler)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from framescope.diagnose import RULES, Finding, diagnose
from framescope.records import COLUMNS, RunResult


def record(summary: dict[str, Any], config: dict[str, Any] | None = None) -> RunResult:
    return RunResult(
        run_dir=Path("run"),
        config=config or {},
        system={},
        rows=pd.DataFrame(columns=list(COLUMNS)),
        summary=summary,
    )


def found(summary: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Finding]:
    return {finding.id: finding for finding in diagnose(record(summary, config))}


def test_every_rule_says_nothing_about_an_empty_record() -> None:
    """Rules run on a starting run's record too: what they need may not be there yet."""
    for rule in RULES:
        assert rule(record({})) is None, rule.__name__


def test_competition_and_steal_name_their_window() -> None:
    quiet = {"cores": 2, "ours": 1.9, "others": 0.05, "steal": 0.0}
    busy = {"cores": 2, "ours": 1.2, "others": 0.8, "steal": 0.3}
    assert found({"cpu": quiet}) == {}
    findings = found({"cpu": busy, "setup_cpu": busy})
    assert findings["competition_during_run"].message.startswith(
        "other processes kept 0.80 of the 2 bound core(s) busy during the run"
    )
    assert "during set-up" in findings["competition_during_setup"].message
    assert "steal" in findings["steal_during_run"].message
    assert findings["competition_during_run"].evidence == {"others_cores": 0.8, "threshold": 0.25}
    assert found({"cpu": {"cores": 2, "ours": None, "others": None, "steal": None}}) == {}  # not measured


WAIT = {
    "run_s": 10.0,
    "wait_s": 3.0,
    "wait_share": 0.23,
    "by_thread": {
        "main": {"run_s": 5.0, "wait_s": 2.0, "delay_s": 1.4},
        "framescope-producer": {"run_s": 1.0, "wait_s": 1.0, "delay_s": 0.5},
    },
}
THREADS = {"cores": [0, 1], "torch": 2, "decode": 1}


def test_waiting_is_reported_only_when_it_is_a_cost() -> None:
    ours = found(
        {"cpu": {"cores": 2, "ours": 1.9, "others": 0.0, "steal": 0.0, "wait": WAIT}, "threads": THREADS}
    )
    message = ours["oversubscribed"].message
    assert message.startswith(
        "the threads doing the work waited for a CPU 23% of the time they were ready to run"
    )
    assert "(main waited 2.0 s, framescope-producer waited 1.0 s)" in message
    assert "try fewer --torch-threads" in message
    busy = {"cores": 2, "ours": 1.0, "others": 0.9, "steal": 0.0, "wait": WAIT}
    neighbours = found({"cpu": busy, "threads": THREADS})
    assert "oversubscribed" not in neighbours  # the neighbours crowded the cores, not our threads
    assert neighbours["competition_during_run"].message.startswith(
        "other processes kept 0.90 of the 2 bound core(s) busy during the run: they compete with the "
        "pipeline and inflate its timings (the pipeline's threads waited for a CPU 23% of the time they were"
    )
    assert neighbours["competition_during_run"].evidence["wait_share"] == 0.23
    trial = {"candidates": [{"torch_threads": 1}, {"torch_threads": 2}], "chosen": 2}
    measured = {
        "cpu": {"cores": 2, "ours": 1.9, "others": 0.0, "wait": WAIT},
        "threads": {**THREADS, "trial": trial},
    }
    assert "oversubscribed" not in found(measured)  # fewer threads were measured slower
    low = {
        "cpu": {"cores": 2, "ours": 1.9, "others": 0.0, "wait": {**WAIT, "wait_share": 0.05}},
        "threads": THREADS,
    }
    assert "oversubscribed" not in found(low)


def test_idle_cores_beside_the_pace_setting_stage_are_reported() -> None:
    one_thread = {"cores": [0, 1], "torch": 1, "decode": 1}
    summary = {
        "pace_stage": "exec_latency_ms",
        "cpu": {"cores": 2, "ours": 1.12, "others": 0.0},
        "threads": one_thread,
    }
    finding = found(summary)["idle_cores"]
    assert finding.message == (
        "the model (exec) set the pace on 1 torch thread(s) while 0.88 of the 2 bound core(s) sat idle; "
        "--torch-threads 2 may be faster."
    )
    assert finding.overrides == {"torch_threads": 2}  # the fix, as RunConfig.replace takes it
    assert "idle_cores" not in found({**summary, "threads": {**one_thread, "trial": {"chosen": 1}}})
    assert "idle_cores" not in found({**summary, "cpu": {"cores": 2, "ours": 1.9, "others": 0.0}})
    assert "idle_cores" not in found({**summary, "pace_stage": "read_latency_ms"})
    full = {**summary, "threads": {"cores": [0, 1], "torch": 2, "decode": 2}}
    assert "idle_cores" not in found(full)


def test_configuration_findings() -> None:
    assert found({"threads": {"bind_ignored": True}})["core_bind_ignored"].message == (
        "--core-bind works on Linux only; the process was not bound."
    )
    config = {"model": {"mode": "retrain", "compile": True, "on_gpu": False}}
    assert found({}, config)["retrain_compile_on_cpu"].message == (
        "torch.compile of a training step on the CPU takes minutes to compile."
    )


def test_input_findings() -> None:
    shortfall = {"frames_read": 30, "frames_expected": 60, "frames_skipped": 0}
    findings = found(
        {"input_shortfall": shortfall, "source": {"uri": "v.mp4"}, "status": "complete", "frames_skipped": 2}
    )
    assert findings["input_ended_early"].message.startswith("the input ended after 30 of the 60 frames")
    assert (
        findings["frames_skipped"].message == "2 undecodable packet(s) or file(s) were skipped in the input."
    )


def test_profiler_findings() -> None:
    config = {"profile": {"enabled": True, "wait": 1, "warmup": 1, "active": 3}}
    assert found({"steps": 2, "trace": None}, config)["no_trace"].message == (
        "no torch.profiler trace: the window (wait 1, warm-up 1, active 3) needs more than the 2 step(s) the "
        "run had."
    )
    assert "no_trace" not in found({"steps": 9, "trace": "torch_trace.json"}, config)
    assert found({"steps": 9, "trace_error": "no room"}, config)["no_trace"].message == "no room"


def stages(**means: float) -> dict[str, Any]:
    return {
        f"{name}_latency_ms" if name != "total" else "total_step_latency_ms": {"mean_ms": v, "p50_ms": v}
        for name, v in means.items()
    }


FILE_1080P = {"kind": "file", "width": 1920, "height": 1080, "decoder": "opencv", "live": False}
CLASSIFIER = {"task": "classification", "device": "cpu", "input": {"size": [224, 224], "resize": 256}}


def test_full_size_decoding_is_found_and_fixed_with_the_right_decoder() -> None:
    summary = {
        "pipeline": "sync",
        "source": FILE_1080P,
        "model": CLASSIFIER,
        "stages": stages(read=5, decode=40, prep=10, exec=12, total=67),
    }
    finding = found(summary, {"source": {"decoder": "opencv"}})["decode_full_size"]
    assert finding.overrides == {"decoder": "pyav", "decode_size": "auto"}  # OpenCV cannot resize
    assert finding.evidence["decode_share"] == pytest.approx(45 / 67)
    pyav = found({**summary, "source": {**FILE_1080P, "decoder": "pyav"}}, {"source": {"decoder": "pyav"}})
    assert pyav["decode_full_size"].overrides == {"decode_size": "auto"}
    assert "decode_full_size" not in found({**summary, "decode_size": [455, 256]})  # already asked for
    small = {**summary, "source": {**FILE_1080P, "width": 320, "height": 240}}
    assert "decode_full_size" not in found(small)  # hardly larger than what is kept


def test_the_input_side_setting_the_pace() -> None:
    sync = {
        "pipeline": "sync",
        "source": FILE_1080P,
        "model": CLASSIFIER,
        "stages": stages(read=5, decode=40, prep=10, exec=12, total=67),
    }
    findings = found(sync)
    assert findings["input_bound"].message.startswith(
        "reading, decoding and preprocessing take 55 ms a batch"
    )
    assert findings["overlap_would_pay"].overrides == {"pipeline": "async"}
    assert findings["overlap_would_pay"].evidence["estimated_gain"] == pytest.approx(67 / 55)
    model_bound = {**sync, "stages": stages(read=1, decode=2, prep=3, exec=90, total=96)}
    assert not {"input_bound", "overlap_would_pay", "decode_full_size"} & set(found(model_bound))
    live = {**sync, "source": {**FILE_1080P, "live": True, "fps": 30.0}, "live": {}, "steady_fps": 29.9}
    assert not {"input_bound", "overlap_would_pay"} & set(found(live))  # the camera sets the pace
    behind = {**live, "steady_fps": 12.0}
    assert "input_bound" in found(behind)
    small = {**FILE_1080P, "width": 320, "height": 240}
    waiting_stages = {**stages(read=30, exec=10, total=31), "queue_wait_ms": {"mean_ms": 20.0}}
    waiting = {"pipeline": "async", "source": small, "model": CLASSIFIER, "stages": waiting_stages}
    assert found(waiting)["input_bound"].evidence["queue_wait_share"] == pytest.approx(20 / 31)
    assert found(waiting)["input_bound"].overrides == {}  # read sets the pace: no thread to add
    one_decoder = {**waiting, "pace_stage": "decode_latency_ms", "threads": {"cores": [0, 1], "decode": 1}}
    finding = found(one_decoder)["input_bound"]
    assert finding.overrides == {"decode_threads": 2}
    assert finding.message.endswith("decoding sets the pace on 1 thread(s): --decode-threads 2 may help.")


GPU_MODEL = {"task": "detection", "device": "cuda", "input": {"size": None, "resize": 800}}


def test_gpu_placement_findings() -> None:
    summary = {"pipeline": "sync", "model": GPU_MODEL, "batch_size": 2, "source": {"live": False},
               "stages": stages(read=2, prep=30, h2d=2, exec=20, d2h=8, post=15, total=77)}  # fmt: skip
    config = {"model": {"on_gpu": True}, "preprocess": {"on_gpu": False}, "postprocess": {"on_gpu": False}}
    findings = found(summary, config)
    assert findings["prep_on_cpu_for_gpu"].overrides == {"prep_on_gpu": True}
    assert findings["detections_copied_raw"].overrides == {"post_on_gpu": True}
    assert findings["gpu_small_batch"].severity == "info" and findings["gpu_small_batch"].overrides == {
        "batch_size": 16
    }
    assert findings["gpu_without_amp"].overrides == {"use_amp": True}
    assert findings["gpu_without_compile"].overrides == {"enable_compile": True}
    done = {"model": {"on_gpu": True, "amp": True, "compile": True}, "preprocess": {"on_gpu": True},
            "postprocess": {"on_gpu": True}}  # fmt: skip
    assert not {"prep_on_cpu_for_gpu", "detections_copied_raw", "gpu_without_amp"} & set(found(summary, done))
    cpu = {**summary, "model": {**GPU_MODEL, "device": "cpu"}}
    assert not any(
        k.startswith(("gpu_", "prep_on", "detections")) for k in found(cpu, {"model": {"on_gpu": False}})
    )


def test_a_live_input_that_falls_behind_and_frames_that_wait() -> None:
    summary = {
        "pipeline": "async",
        "batch_size": 1,
        "source": {"fps": 30.0, "live": True},
        "steady_fps": 12.0,
        "steady_frames": 120,
        "pace_stage": "exec_latency_ms",
        "live": {"frames_dropped": 180, "latency_p50_ms": 420.0},
        "stages": {
            "total_step_latency_ms": {"mean_ms": 85.0, "p50_ms": 83.0},
            "read_latency_ms": {"mean_ms": 20.0},
            "exec_latency_ms": {"mean_ms": 80.0},
            "post_latency_ms": {"mean_ms": 3.0},
        },
    }
    findings = found(summary)
    behind = findings["live_falls_behind"]
    assert behind.evidence["needed_speedup"] == pytest.approx(2.5)
    # A frame arrives every 33.3 ms, a step takes 83.3 ms: 50 ms to find. The model side sets the pace
    # (async), so only its stages count: exec 80 -> 30 ms is 2.67x; post (3 ms) cannot do it alone.
    assert behind.evidence["stage_speedups"] == {"exec": pytest.approx(80 / 30), "post": None}
    assert "every 33.3 ms and a step takes 83.3 ms, so it must get 2.50x faster" in behind.message
    assert behind.message.endswith("; on its own, exec 2.67x faster would do it.")
    sync = found({**summary, "pipeline": "sync"})["live_falls_behind"]
    assert list(sync.evidence["stage_speedups"]) == ["exec", "read", "post"]  # read (20 ms) cannot either
    assert sync.evidence["stage_speedups"]["read"] is None
    queue = findings["live_latency_is_queueing"]
    assert queue.overrides == {"prefetch": 1}  # newest frames first already: prefetch less
    buffered = found(summary, {"source": {"live_buffer": 8}, "prefetch": 1})["live_latency_is_queueing"]
    assert buffered.overrides == {"live_buffer": 0}  # a buffer worked through in order: newest first
    assert "live_latency_is_queueing" not in found(summary, {"prefetch": 1})  # nothing left to change
    keeping_up = {**summary, "steady_fps": 30.0, "live": {"frames_dropped": 0, "latency_p50_ms": 90.0}}
    assert not {"live_falls_behind", "live_latency_is_queueing"} & set(found(keeping_up))


def run_of_rates(rates: list[float], warmup: int = 0) -> RunResult:
    rows = pd.DataFrame(
        {
            "frames": [8] * len(rates),
            "total_step_latency_ms": [8000.0 / r for r in rates],
            "warmup": [1] * warmup + [0] * (len(rates) - warmup),
            "profiled": [0] * len(rates),
        }
    )
    return RunResult(Path("run"), {"warmup_steps": warmup}, {}, rows, {"steady_steps": len(rates) - warmup})


def ids(run: RunResult) -> set[str]:
    return {f.id for f in diagnose(run)}


def test_an_unstable_rate_and_a_trend_are_told_apart_from_noise() -> None:
    rng = np.random.default_rng(0)
    steady = list(100 + rng.normal(0, 3, 60))
    assert not {"unstable_rate", "warm_up_too_short", "rate_drifts_down"} & ids(run_of_rates(steady))
    halved = steady[:30] + [r / 2 for r in steady[30:]]  # another process arrives halfway
    assert {"unstable_rate", "rate_drifts_down"} <= ids(run_of_rates(halved))
    slow_start = [60.0] * 6 + steady[6:]
    finding = next(f for f in diagnose(run_of_rates(slow_start, warmup=2)) if f.id == "warm_up_too_short")
    assert finding.overrides == {"warmup_steps": 6}  # the six slow steps, two of them warm-up already
    noisy_short = list(100 + rng.normal(0, 30, 20))  # too few steps to judge
    assert not {"unstable_rate", "warm_up_too_short"} & ids(run_of_rates(noisy_short))


def test_percentiles_over_few_steps_are_information() -> None:
    (finding,) = [f for f in diagnose(record({"steady_steps": 28})) if f.id == "percentiles_on_few_steps"]
    assert finding.severity == "info" and "p99 over 28 steady steps" in finding.message
