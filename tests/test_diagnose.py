"""Diagnosis rules: pure functions of a run record, tested on hand-made records; the runs that provoke
them for real are in the tests of what they judge (threads, sources, the profiler)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

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
    neighbours = found({"cpu": busy, "threads": THREADS})["oversubscribed"].message
    assert "other processes kept 0.90 core(s) busy" in neighbours and "fewer" not in neighbours
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
