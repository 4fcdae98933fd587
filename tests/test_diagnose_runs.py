"""The diagnosis rules on real runs: each situation provoked on this machine's CPU, the findings read back
from the run directory's summary.json as a user (or a CI check) would read them. The rules' logic is tested on
constructed records in test_diagnose.py; the thread and core findings (and the demo run's silence) are
provoked in test_threads.py, the GPU findings in test_gpu.py. Hypervisor steal cannot be provoked from inside
a VM: its rule is tested on constructed records only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import framescope
from framescope import RunConfig
from framescope.diagnose._rules import OVERLAP_GAIN, _sides
from framescope.records import Row

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core binding is Linux-only")

MACHINE = {"competition_during_setup", "competition_during_run", "steal_during_setup", "steal_during_run"}
"""Findings about what else the shared machine was doing: true when they fire, and no test's business."""

INPUT_SIDE = {"input_bound", "decode_full_size", "overlap_would_pay"}


def findings_on_disk(result: framescope.RunResult) -> dict[str, dict[str, Any]]:
    summary = json.loads((result.run_dir / "summary.json").read_text())
    return {finding["id"]: finding for finding in summary["findings"]}


def run(tmp_path: Path, observer: framescope.RunObserver | None = None, **flat: Any) -> framescope.RunResult:
    config = RunConfig.from_flat(output_dir=str(tmp_path), progress="none", **flat)
    return framescope.run(config, observer=observer)


def test_full_size_decoding_in_a_sync_run_is_the_input_side_setting_the_pace(
    clip_1080p: Path, tmp_path: Path
) -> None:
    """The issue's first case: a small model, 1080p decoded by OpenCV, sync. The input side sets the pace,
    frames are decoded at 48 times the pixels preprocessing keeps, and overlap would pay."""
    result = run(
        tmp_path, model_name="mobilenet_v3_small", input_path=str(clip_1080p), batch_size=8,
        pipeline="sync", decoder="opencv",
    )  # fmt: skip
    found = findings_on_disk(result)
    assert set(found) >= INPUT_SIDE - {"overlap_would_pay"}, found
    assert found["decode_full_size"]["overrides"] == {"decoder": "pyav", "decode_size": "auto"}
    assert found["decode_full_size"]["evidence"]["frame_pixels"] == 1920 * 1080
    assert found["input_bound"]["evidence"]["input_ms"] > found["input_bound"]["evidence"]["model_ms"]
    # Overlap pays when the smaller side is at least a fifth of the larger: here the model is small, so
    # the estimate sits near that line; the finding must agree with this run's own stage times either way.
    producer, model, _ = _sides(result.summary)
    gain = (producer + model) / max(producer, model)
    assert ("overlap_would_pay" in found) == (gain >= OVERLAP_GAIN), (gain, found)
    if "overlap_would_pay" in found:
        assert found["overlap_would_pay"]["overrides"] == {"pipeline": "async"}
    assert found["percentiles_on_few_steps"]["severity"] == "info"  # 6 steps, p99 printed


@pytest.mark.slow
def test_a_model_bound_run_gets_no_input_side_advice_and_no_warning(tmp_path: Path) -> None:
    """No false alarms: resnet50 on frames already the size it takes, with the plan framescope chose and
    malloc keeping freed memory (glibc's page faults are a finding of their own: tests/test_malloc.py). The
    model sets the pace; nothing warns (what the shared machine did aside)."""
    result = run(
        tmp_path, model_name="resnet50", input_path="synthetic:224x224:160", batch_size=8, max_steps=20,
        malloc="retain",
    )  # fmt: skip
    found = findings_on_disk(result)
    assert result.summary["pace_stage"] == "exec_latency_ms"
    assert not INPUT_SIDE & set(found), found
    warnings = {k: f["message"] for k, f in found.items() if f["severity"] != "info" and k not in MACHINE}
    assert warnings == {}


@pytest.mark.slow
def test_a_live_input_faster_than_the_model_falls_behind_and_its_frames_queue(tmp_path: Path) -> None:
    """Frames arriving at 120 FPS for resnet18 (about 50 FPS here), kept 16 deep: drops, a stated speedup
    for each stage, and latency that is mostly waiting in the live buffer."""
    result = run(
        tmp_path, model_name="resnet18", input_path="synthetic:320x240:480", source_fps=120, batch_size=2,
        live_buffer=16,
    )  # fmt: skip
    found = findings_on_disk(result)
    behind = found["live_falls_behind"]
    assert behind["evidence"]["source_fps"] == 120
    assert behind["evidence"]["needed_speedup"] == pytest.approx(120 / result.summary["steady_fps"])
    assert behind["evidence"]["dropped_share"] > 0.2
    assert behind["evidence"]["stage_speedups"]["exec"] > 1  # the model is the stage that could do it alone
    queue = found["live_latency_is_queueing"]
    assert queue["overrides"] == {"live_buffer": 0}  # newest frames first instead of the 16 in order
    assert queue["evidence"]["latency_p50_ms"] > 2 * queue["evidence"]["step_p50_ms"]
    # The evidence agrees with the rows the run wrote: the median latency of its steady steps.
    rows = result.rows
    steady = rows[(rows["warmup"] == 0) & (rows["profiled"] == 0)]
    assert queue["evidence"]["latency_p50_ms"] == pytest.approx(
        float(steady["latency_ms"].median()), rel=0.05
    )


class HogAt(framescope.RunObserver):
    """Starts a process spinning on core 0 when step ``start`` ends, and kills it when step ``stop`` ends:
    another job arriving (or leaving) on a shared machine, at a known point of the run."""

    def __init__(self, start: int, stop: int | None = None) -> None:
        self.start, self.stop = start, stop
        self.hog: subprocess.Popen[bytes] | None = None

    def _spin(self) -> None:
        code = "import os; os.sched_setaffinity(0, {0})\nwhile True: pass"
        self.hog = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.2)  # the interpreter starts before it competes

    def on_step(self, row: Row) -> None:
        if row.step == self.start:
            self._spin()
        if row.step == self.stop:
            self.kill()

    def kill(self) -> None:
        if self.hog is not None:
            self.hog.kill()
            self.hog.wait()
            self.hog = None


@pytest.mark.slow
@linux_only
def test_another_process_arriving_halfway_makes_the_rate_unstable_and_drift(tmp_path: Path) -> None:
    hog = HogAt(start=45)
    try:
        result = run(
            tmp_path, hog, model_name="mobilenet_v3_small", input_path="synthetic:320x240", batch_size=4,
            max_steps=90, warmup_steps=2, core_bind="0", torch_threads=1,
        )  # fmt: skip
    finally:
        hog.kill()
    found = findings_on_disk(result)
    assert {"unstable_rate", "rate_drifts_down"} <= set(found), found
    first, *_, last = found["unstable_rate"]["evidence"]["window_medians_fps"]
    assert last < 0.8 * first  # the hog took about half of core 0 in the last third


@pytest.mark.slow
@linux_only
def test_a_slow_start_is_a_warm_up_too_short(tmp_path: Path) -> None:
    """The first steps run beside another process that then leaves: they are slower than the rest, and the
    finding's fix keeps them (and no more than twice as many) out of the summary."""
    hog = HogAt(start=0, stop=8)
    try:
        result = run(
            tmp_path, hog, model_name="mobilenet_v3_small", input_path="synthetic:320x240", batch_size=4,
            max_steps=90, warmup_steps=0, core_bind="0", torch_threads=1,
        )  # fmt: skip
    finally:
        hog.kill()
    found = findings_on_disk(result)
    assert "warm_up_too_short" in found, found
    assert 6 <= found["warm_up_too_short"]["overrides"]["warmup_steps"] <= 18
