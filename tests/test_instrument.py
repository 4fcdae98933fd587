from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from framescope.instrument import CUDA_SYNC, HOST_WALL, FakeClock, ProfilerWindow, StageTimer
from framescope.instrument import system as system_info


def test_spans_time_exactly_with_a_fake_clock() -> None:
    clock = FakeClock()
    timer = StageTimer(clock)
    with timer.span("read"):
        clock.advance(0.25)
    with timer.span("exec"):
        clock.advance(1.5)
    with timer.span("read"):  # a stage entered twice in a step accumulates
        clock.advance(0.05)
    assert timer.samples == {"read": pytest.approx(0.30), "exec": pytest.approx(1.5)}
    assert timer.method == HOST_WALL
    timer.reset()
    assert timer.samples == {}


def test_a_span_records_its_time_even_when_the_stage_fails() -> None:
    clock = FakeClock()
    timer = StageTimer(clock)

    def failing_stage() -> None:
        with timer.span("prep"):
            clock.advance(0.1)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_stage()
    assert timer.samples["prep"] == pytest.approx(0.1)


def test_device_sync_brackets_every_stage() -> None:
    calls: list[str] = []
    clock = FakeClock()

    def sync() -> None:
        calls.append(f"sync@{clock()}")

    timer = StageTimer(clock, sync=sync)
    with timer.span("exec"):
        calls.append("work")
        clock.advance(2.0)
    assert calls == ["sync@0.0", "work", "sync@2.0"]
    assert timer.method == CUDA_SYNC


def test_real_clock_agrees_with_sleep() -> None:
    """An independent measurement: time.sleep's duration, as seen by the default clock."""
    timer = StageTimer()
    with timer.span("sleep"):
        time.sleep(0.05)
    assert 0.045 <= timer.samples["sleep"] < 0.2


@pytest.mark.filterwarnings("ignore:Profiler won't be using warmup")
def test_spans_appear_in_a_torch_profiler_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    timer = StageTimer()
    with ProfilerWindow(enabled=True, trace_path=trace, wait=0, warmup=0, active=2) as window:
        for _ in range(2):
            with timer.span("prep"):
                torch.ones(64).sum()
            with timer.span("exec"):
                torch.ones(64).mul(2)
            window.step()
    assert window.written == trace
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    assert {"prep", "exec"} <= names


def test_profiler_window_marks_traced_steps() -> None:
    window = ProfilerWindow(enabled=True, trace_path=Path("unused"), wait=1, warmup=1, active=2)
    assert [window.traced(step) for step in range(6)] == [False, True, True, True, False, False]
    off = ProfilerWindow(enabled=False, trace_path=Path("unused"))
    assert not any(off.traced(step) for step in range(6))


def test_disabled_profiler_costs_nothing_and_writes_nothing(tmp_path: Path) -> None:
    with ProfilerWindow(enabled=False, trace_path=tmp_path / "t.json") as window:
        window.step()
    assert window.written is None and not (tmp_path / "t.json").exists()


@pytest.mark.filterwarnings("ignore:Profiler won't be using warmup")
def test_a_run_shorter_than_the_window_still_writes_what_was_recorded(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    with ProfilerWindow(enabled=True, trace_path=trace, wait=0, warmup=0, active=5) as window:
        with torch.profiler.record_function("only-step"):
            torch.ones(8).sum()
        window.step()
    assert window.written == trace
    assert "only-step" in trace.read_text()


def test_system_information() -> None:
    info = system_info.collect()
    for key in ("cpu_model", "logical_cores", "affinity", "memory_total_gib", "torch", "cuda_available"):
        assert key in info
    assert info["torch"] == torch.__version__
    assert info["logical_cores"] >= 1 and info["memory_total_gib"] > 0
    json.dumps(info)  # system.json must serialise


def test_nested_spans_count_exclusive_time() -> None:
    clock = FakeClock()
    timer = StageTimer(clock)
    with timer.span("exec"):
        clock.advance(1.0)
        with timer.span("split"):
            clock.advance(0.25)
        clock.advance(2.0)
    assert timer.samples == {"exec": pytest.approx(3.0), "split": pytest.approx(0.25)}


def test_stage_cpu_use_is_totalled_for_outermost_spans() -> None:
    clock, cpu = FakeClock(), FakeClock()
    timer = StageTimer(clock, cpu_clock=cpu)
    with timer.span("read"):
        clock.advance(1.0)
        cpu.advance(1.0)
        with timer.span("decode"):  # nested: already inside read's totals
            clock.advance(1.0)
            cpu.advance(1.9)
    with timer.span("exec"):
        clock.advance(2.0)
        cpu.advance(4.0)
    assert timer.parallelism() == {"read": pytest.approx(1.45), "exec": pytest.approx(2.0)}
