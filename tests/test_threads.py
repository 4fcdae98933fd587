from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import framescope
from framescope import RunConfig
from framescope.errors import DeviceError
from framescope.instrument.cpu_load import CpuLoad, CpuLoadMeter, load_warnings
from framescope.pipeline import bind_cores, plan_threads

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core binding is Linux-only")


def test_threads_follow_the_bound_cores() -> None:
    assert plan_threads([0, 1, 2, 3], torch_threads=None, decode_threads=0) == (4, 4, [])
    assert plan_threads([5], torch_threads=None, decode_threads=0)[:2] == (1, 1)


def test_more_threads_than_cores_is_reported() -> None:
    torch_n, decode_n, warnings = plan_threads([0, 1], torch_threads=8, decode_threads=3)
    assert (torch_n, decode_n) == (8, 3)
    assert len(warnings) == 2
    assert warnings[0].startswith("8 torch threads on 2 core(s) oversubscribe the CPU")
    assert "--decode-threads" in warnings[1]


@linux_only
def test_binding_to_cores_that_do_not_exist() -> None:
    total = os.cpu_count() or 1
    with pytest.raises(
        DeviceError, match=rf"core\(s\) {total}-{total + 1}, which do not exist: this machine"
    ):
        bind_cores((total, total + 1))


@linux_only
def test_all_leaves_the_affinity_alone() -> None:
    cores, bound, warnings = bind_cores(None)
    assert cores == sorted(os.sched_getaffinity(0)) and not bound and not warnings


def test_binding_elsewhere_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    _cores, bound, warnings = bind_cores((0,))
    assert not bound
    assert warnings == ["--core-bind works on Linux only; the process was not bound."]


def test_cpu_meter_sees_this_process_working() -> None:
    meter = CpuLoadMeter()
    deadline = time.perf_counter() + 0.4
    while time.perf_counter() < deadline:
        pass
    load = meter.read()
    assert load.seconds >= 0.4
    assert 0.6 < load.ours < 1.5


def test_load_warnings_name_the_competition() -> None:
    quiet = CpuLoad(seconds=5.0, cores=2, ours=1.9, others=0.05, steal=0.0)
    busy = CpuLoad(seconds=5.0, cores=2, ours=1.2, others=0.8, steal=0.3)
    assert load_warnings(quiet, "during the run") == []
    warnings = load_warnings(busy, "during the run")
    assert warnings[0].startswith("other processes kept 0.80 of the 2 bound core(s) busy during the run")
    assert "steal" in warnings[1]


@pytest.mark.slow
@linux_only
def test_a_competing_process_on_the_bound_core_is_measured_and_reported(tmp_path: Path) -> None:
    hog = subprocess.Popen(
        [sys.executable, "-c", "import os; os.sched_setaffinity(0, {0})\nwhile True: pass"],
    )
    try:
        time.sleep(0.3)
        result = framescope.run(
            RunConfig.from_flat(
                model_name="mobilenet_v3_small",
                input_path="synthetic:320x240",
                batch_size=4,
                max_steps=15,
                core_bind="0",
                output_dir=str(tmp_path),
                progress="none",
            )
        )
    finally:
        hog.kill()
        hog.wait()
    cpu = result.summary["cpu"]
    assert cpu["cores"] == 1
    assert cpu["others"] > 0.3, cpu  # the hog gets a fair share of core 0
    assert any(w.startswith("other processes kept") for w in result.summary["warnings"])


def test_async_rebalance_gives_the_model_every_core_only_when_the_producer_is_mostly_idle() -> None:
    from framescope.pipeline import rebalance_async

    # resnet50 on 2 cores: producer 72 ms per batch, model 868 ms on 1 thread (~434 ms on 2)
    threads, reason = rebalance_async(2, 1, producer_s=0.072, model_s=0.868)
    assert threads == 2 and "got all 2 cores" in reason and "(17%)" in reason
    # mobilenet: the producer is the bottleneck; it keeps its core
    threads, reason = rebalance_async(2, 1, producer_s=0.082, model_s=0.052)
    assert threads == 1 and "keeps its own core" in reason
    assert rebalance_async(4, 4, 1.0, 0.1)[0] == 4  # nothing to give


def test_runnable_threads_sees_busy_threads() -> None:
    from framescope.instrument.sampler import runnable_threads

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    workers = [threading.Thread(target=spin) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.1)
        counts = [runnable_threads() for _ in range(20)]
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert max(c for c in counts if c is not None) >= 2  # the GIL lets one run at a time, but both are R


def test_sampler_summary_and_warning() -> None:
    from framescope.instrument.sampler import RunnableSampler

    sampler = RunnableSampler(cores=2, samples=[3, 3, 3, 1])
    stats = sampler.summary()
    assert stats == {"runnable_p50": 3.0, "runnable_p90": 3.0, "oversubscribed_share": 0.75}
    assert "wanted to run than there are cores (2) in 75% of samples" in sampler.warnings()[0]
    assert RunnableSampler(cores=4, samples=[3, 3, 2]).warnings() == []


def test_async_run_records_its_thread_decision(clip: Path, tmp_path: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="resnet18", input_path=str(clip), pipeline="async", decoder="pyav", batch_size=4,
            max_steps=6, output_dir=str(tmp_path), progress="none",
        )
    )  # fmt: skip
    notes = result.summary["threads"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("async: the producer needed")
    assert "runnable_p50" in result.summary["cpu"]
