"""The synchronous loop, driven by a fake source and a fake clock so every duration is exact."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import RowDict as Row
from tests.conftest import collecting_loop

from framescope.instrument import Clock, FakeClock, ProfilerWindow, StageTimer
from framescope.models import StepResult
from framescope.pipeline import PlannedStage, StepPlan, collate, run_sync
from framescope.preprocess import Batch
from framescope.sources import Frame, Source, SourceInfo


class FakeSource(Source):
    """Frames that cost ``read_s`` each on the fake clock."""

    def __init__(
        self, clock: FakeClock, frames: int | None, read_s: float = 0.01, live: bool = False
    ) -> None:
        super().__init__(clock)
        self.fake_clock = clock
        self.total = frames
        self.read_s = read_s
        self.info = SourceInfo(kind="synthetic", uri="fake", decoder="none", live=live)

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self.total is not None and self.frames_read >= self.total:
            return None
        self.fake_clock.advance(self.read_s)
        return self._frame(np.zeros((4, 6, 3), dtype=np.uint8), self.frames_read / 25.0)


def plan_costing(clock: FakeClock, prep_s: float, model_s: float, loss: float | None = None) -> StepPlan:
    def prep(batch: Batch) -> Batch:
        clock.advance(prep_s)
        return batch

    def model(batch: Batch) -> StepResult:
        clock.advance(model_s)
        return StepResult(output=None, loss=loss)

    return StepPlan([PlannedStage("prep", prep), PlannedStage("exec", model)])


def run(
    source: Source,
    plan: StepPlan,
    clock: Clock,
    *,
    batch_size: int = 4,
    max_steps: int | None = None,
    warmup: int = 0,
    profiler: ProfilerWindow | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Run the sync loop timed by ``clock``; rows are returned, and also handed to ``on_row`` as they come."""
    rows: list[Row] = []
    loop = collecting_loop(
        rows, batch_size=batch_size, clock=clock, max_steps=max_steps, warmup_steps=warmup,
        timer=StageTimer(clock), profiler=profiler, on_row=on_row,
    )  # fmt: skip
    loop.cpu_clock = lambda: 0.0
    run_sync(source, plan, loop)
    return rows


def test_rows_carry_exact_stage_times() -> None:
    clock = FakeClock()
    rows = run(FakeSource(clock, frames=8, read_s=0.01), plan_costing(clock, 0.005, 0.1), clock)
    assert len(rows) == 2
    for row in rows:
        assert row["read_latency_ms"] == pytest.approx(40.0)
        assert row["prep_latency_ms"] == pytest.approx(5.0)
        assert row["exec_latency_ms"] == pytest.approx(100.0)
        assert row["total_step_latency_ms"] == pytest.approx(145.0)
        assert row["fps"] == pytest.approx(4 / 0.145)
        assert row["h2d_latency_ms"] is None and row["d2h_latency_ms"] is None
    assert [r["step_start_s"] for r in rows] == pytest.approx([0.0, 0.145])
    assert [(r["first_frame"], r["first_pts_s"], r["last_pts_s"]) for r in rows] == [
        (0, 0.0, pytest.approx(0.12)),
        (4, pytest.approx(0.16), pytest.approx(0.28)),
    ]


def test_short_last_batch_is_processed_not_dropped() -> None:
    clock = FakeClock()
    rows = run(FakeSource(clock, frames=10), plan_costing(clock, 0, 0), clock, batch_size=4)
    assert [r["frames"] for r in rows] == [4, 4, 2]
    assert all(r["batch_size"] == 4 for r in rows)


def test_max_steps_and_warmup_flags() -> None:
    clock = FakeClock()
    rows = run(FakeSource(clock, frames=None), plan_costing(clock, 0, 0.01), clock, max_steps=5, warmup=2)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["warmup"] for r in rows] == [1, 1, 0, 0, 0]


def test_profiled_steps_are_flagged() -> None:
    clock = FakeClock()
    window = ProfilerWindow(enabled=False, trace_path=Path("unused"), wait=1, warmup=1, active=1)
    window.enabled = True  # mark steps without starting a real profiler
    rows = run(FakeSource(clock, frames=None), plan_costing(clock, 0, 0), clock, max_steps=4, profiler=window)
    assert [r["profiled"] for r in rows] == [0, 1, 1, 0]


def test_loss_is_carried_from_the_model_step() -> None:
    clock = FakeClock()
    rows = run(FakeSource(clock, frames=4), plan_costing(clock, 0, 0, loss=0.75), clock)
    assert rows[0]["loss"] == 0.75


def test_transfers_are_their_own_stages() -> None:
    clock = FakeClock()
    plan = plan_costing(clock, 0.001, 0.002)

    def move(batch: Batch) -> Batch:
        clock.advance(0.003)
        return batch

    plan.stages.insert(0, PlannedStage("h2d", move))
    plan.stages.insert(2, PlannedStage("d2h", move))
    rows = run(FakeSource(clock, frames=4, read_s=0), plan, clock)
    assert rows[0]["h2d_latency_ms"] == pytest.approx(3.0)
    assert rows[0]["d2h_latency_ms"] == pytest.approx(3.0)
    assert rows[0]["total_step_latency_ms"] == pytest.approx(9.0)


def test_each_row_is_handed_over_before_the_next_step_starts() -> None:
    clock = FakeClock()
    seen_at: list[float] = []

    def on_row(row: Row) -> None:
        seen_at.append(clock())

    run(FakeSource(clock, frames=8), plan_costing(clock, 0, 1.0), clock, on_row=on_row)
    assert seen_at == pytest.approx([1.04, 2.08])


def test_empty_input_runs_no_step() -> None:
    clock = FakeClock()
    assert run(FakeSource(clock, frames=0), plan_costing(clock, 0, 0), clock) == []


def test_real_time_stages_match_sleeps() -> None:
    """Independent measurement: stages that sleep known times, timed by the real clock."""

    class SleepySource(FakeSource):
        def read(self) -> Frame | None:
            time.sleep(0.004)
            return self._frame(np.zeros((4, 6, 3), dtype=np.uint8), None)

    def prep(batch: Batch) -> Batch:
        time.sleep(0.02)
        return batch

    def model(batch: Batch) -> StepResult:
        time.sleep(0.05)
        return StepResult(None)

    plan = StepPlan([PlannedStage("prep", prep), PlannedStage("exec", model)])
    rows = run(SleepySource(FakeClock(), frames=None), plan, time.perf_counter, batch_size=5, max_steps=3)
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k.endswith("_ms") and rows[0][k]}
    assert 20.0 <= median["read_latency_ms"] < 40.0
    assert 20.0 <= median["prep_latency_ms"] < 35.0
    assert 50.0 <= median["exec_latency_ms"] < 70.0
    for row in rows:
        stages = row["read_latency_ms"] + row["prep_latency_ms"] + row["exec_latency_ms"]
        assert stages <= row["total_step_latency_ms"] < stages + 5.0


def test_collate_makes_a_channels_first_uint8_batch() -> None:
    frames = [Frame(np.full((4, 6, 3), i, dtype=np.uint8), i, None, 0.0) for i in range(3)]
    batch = collate(frames)
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (3, 3, 4, 6) and batch.dtype == torch.uint8
    assert batch[2].eq(2).all()
    mixed = collate([frames[0], Frame(np.zeros((5, 5, 3), dtype=np.uint8), 3, None, 0.0)])
    assert isinstance(mixed, list) and [tuple(t.shape) for t in mixed] == [(3, 4, 6), (3, 5, 5)]


@pytest.mark.parametrize(
    ("prep", "model_in", "model_out", "post", "expected"),
    [
        ("cpu", "cpu", "cpu", "cpu", ["prep", "exec", "post"]),
        ("cpu", "cuda", "cuda", "cpu", ["prep", "h2d", "exec", "d2h", "post"]),
        ("cuda", "cuda", "cuda", "cpu", ["h2d", "prep", "exec", "d2h", "post"]),
        ("cuda", "cuda", "cuda", "cuda", ["h2d", "prep", "exec", "post", "d2h"]),
        ("cuda", "cpu", "cpu", "cpu", ["h2d", "prep", "d2h", "exec", "post"]),
        ("cpu", "cpu", "cuda", "cuda", ["prep", "exec", "post", "d2h"]),  # a split: input on the CPU
        ("cpu", "cpu", "cpu", "cuda", ["prep", "exec", "h2d", "post", "d2h"]),
    ],
)
def test_placement_decides_the_copies(
    prep: str, model_in: str, model_out: str, post: str, expected: list[str]
) -> None:
    """The GPU placement logic, checked without a GPU: only the plan is built, nothing is moved."""
    from framescope.pipeline import plan_stages

    def nothing(value: object) -> object:
        return value

    plan = plan_stages(
        prep=nothing,
        prep_device=torch.device(prep),
        model=nothing,  # type: ignore[arg-type]
        model_warm_up=None,
        input_device=torch.device(model_in),
        output_device=torch.device(model_out),
        post=nothing,
        post_device=torch.device(post),
    )
    assert [stage.name for stage in plan.stages] == expected


def test_without_post_nothing_comes_back() -> None:
    from framescope.pipeline import plan_stages

    plan = plan_stages(
        prep=lambda v: v,
        prep_device=torch.device("cpu"),
        model=StepResult,
        model_warm_up=None,
        input_device=torch.device("cuda"),
        output_device=torch.device("cuda"),
    )
    assert [stage.name for stage in plan.stages] == ["prep", "h2d", "exec"]


def test_timers_give_the_source_the_span_of_the_thread_that_reads_it() -> None:
    """Sync: the one timer. Async: the producer's, on the device for frames decoded there."""
    from framescope.pipeline import Timers

    sync = Timers.for_run(time.perf_counter, asynchronous=False, cuda=False)
    assert sync.producer is None and sync.decode_span(decode_on_gpu=False) == sync.model.span
    asynchronous = Timers.for_run(time.perf_counter, asynchronous=True, cuda=False)
    assert asynchronous.producer is not None
    assert asynchronous.decode_span(decode_on_gpu=False) == asynchronous.producer.span
    assert asynchronous.method == "host-wall"


def test_a_source_decodes_inside_the_span_it_was_built_with(clip: Path) -> None:
    from framescope.config import SourceConfig
    from framescope.sources import make_source

    spans: list[str] = []

    def span(name: str) -> Any:
        import contextlib

        spans.append(name)
        return contextlib.nullcontext()

    source = make_source(SourceConfig(input_path=str(clip), decoder="pyav"), span=span)
    with source:
        assert source.read() is not None
    assert "decode" in spans
