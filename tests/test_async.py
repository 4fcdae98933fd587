"""The async pipeline: the producer thread, the bounded queue, event timing and deferred rows."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import CLIP_FRAMES, collecting_loop
from tests.conftest import RowDict as Row

import framescope
from framescope import RunConfig
from framescope.errors import SourceError
from framescope.instrument import FakeClock, StageTimer
from framescope.instrument.events import EventTimer
from framescope.models import StepResult
from framescope.pipeline import PlannedStage, Producer, StepPlan, plan_threads, run_async
from framescope.pipeline._omp import limit_this_thread, threads_of_this_thread
from framescope.records import summarize
from framescope.sources import Frame, Source, SourceInfo


class CountingSource(Source):
    """Frames on demand; records how many were read, optionally failing at a given frame."""

    def __init__(self, frames: int | None, fail_at: int | None = None, delay_s: float = 0.0) -> None:
        super().__init__()
        self.total, self.fail_at, self.delay_s = frames, fail_at, delay_s
        self.info = SourceInfo(kind="synthetic", uri="counting", decoder="none", live=False)

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self.fail_at is not None and self.frames_read == self.fail_at:
            raise SourceError("the source broke")
        if self.total is not None and self.frames_read >= self.total:
            return None
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._frame(np.zeros((2, 2, 3), dtype=np.uint8), self.frames_read / 30)


def model_plan(model_s: float = 0.0, loss: Any = None) -> StepPlan:
    def model(batch: Any) -> StepResult:
        if model_s:
            time.sleep(model_s)
        return StepResult(batch, loss)

    return StepPlan([PlannedStage("prep", lambda b: b), PlannedStage("exec", model)])


def run(
    source: Source,
    plan: StepPlan,
    *,
    batch_size: int = 2,
    max_steps: int | None = None,
    rows: list[Row] | None = None,
    **kw: Any,
) -> list[Row]:
    """Run the async loop; rows collect in ``rows`` (kept when the run raises) and are returned."""
    rows = [] if rows is None else rows
    warmup_steps = kw.pop("warmup_steps_", 0)
    loop = collecting_loop(rows, batch_size=batch_size, max_steps=max_steps, warmup_steps=warmup_steps)
    run_async(source, plan, loop, **kw)
    return rows


def producer_for(source: Source, stages: list[PlannedStage], batch_size: int = 2, **kw: Any) -> Producer:
    return Producer(source, stages, collecting_loop([], batch_size=batch_size), depth=2, **kw)


def test_all_frames_arrive_in_order_with_a_short_last_batch() -> None:
    rows = run(CountingSource(7), model_plan(), batch_size=3)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["frames"] for r in rows] == [3, 3, 1]
    assert [r["first_frame"] for r in rows] == [0, 3, 6]
    assert all(r["queue_wait_ms"] is not None for r in rows)


def test_the_producer_stays_at_most_prefetch_batches_ahead() -> None:
    source = CountingSource(None)
    producer = producer_for(source, [])
    producer.start()
    try:
        deadline = time.monotonic() + 5
        while producer.queue.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # had it run unbounded, it would have read far more by now
        # two batches queued and one more read, waiting for room in the queue
        assert source.frames_read <= 2 * 3
        first = producer.get()
        assert first is not None and first.frames[0].index == 0
    finally:
        producer.close()
    assert not producer._thread.is_alive()


class FakeStream:
    """Stands in for torch.cuda.Stream: remembers the events it was told to wait for."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.waited: list[Any] = []

    def wait_event(self, event: Any) -> None:
        self.waited.append(event)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """CUDA's stream API, pinned memory and the device copy faked on the CPU, so the producer's and the
    consumer's GPU logic runs here: which stream reads happen on, where batches are pinned, which tensors are
    handed over to the model's stream."""
    gpu: dict[str, Any] = {"default": FakeStream(), "handed_over": [], "pinned": [], "copied": []}
    local = threading.local()  # like CUDA's, the current stream is per thread

    @contextlib.contextmanager
    def stream(chosen: Any) -> Iterator[None]:
        previous, local.current = getattr(local, "current", None), chosen
        try:
            yield
        finally:
            local.current = previous

    gpu["current_of_this_thread"] = lambda: getattr(local, "current", None)

    def pinned_empty(shape: Any) -> torch.Tensor:
        tensor = torch.empty(tuple(shape), dtype=torch.uint8)
        gpu["pinned"].append(tensor)
        return tensor

    def device_copy(value: Any, device: torch.device) -> Any:
        gpu["copied"].append(value)
        return value

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(
        torch.cuda, "current_stream", lambda device=None: gpu["current_of_this_thread"]() or gpu["default"]
    )
    monkeypatch.setattr("framescope.pipeline._async.on_device", lambda tensor: True)
    monkeypatch.setattr(
        torch.Tensor, "record_stream", lambda t, s: gpu["handed_over"].append((t, s)), raising=False
    )
    monkeypatch.setattr(
        torch.Tensor, "pin_memory", lambda t, *a: pytest.fail("pinned outside the read stage")
    )
    monkeypatch.setattr("framescope.pipeline._batcher.pinned_empty", pinned_empty)
    monkeypatch.setattr("framescope.pipeline._async._async_copy", device_copy)
    return gpu


class StreamWatchingSource(CountingSource):
    """Records the current (fake) CUDA stream at every read, and decodes inside its span."""

    def __init__(self, frames: int | None, gpu: dict[str, Any], span: Any) -> None:
        super().__init__(frames)
        self.span = span
        self.gpu = gpu
        self.streams: list[Any] = []

    def read(self) -> Frame | None:
        self.streams.append(self.gpu["current_of_this_thread"]())
        with self.span("decode"):
            return super().read()


CUDA = torch.device("cuda")


def test_the_producer_reads_pins_and_copies_on_its_own_stream(
    fake_gpu: dict[str, Any], device: dict[str, Any]
) -> None:
    """Batches going to the GPU are stacked into pinned memory while being read (the h2d stage is the device
    copy alone, no host pinning inside it), and the read, the copy and the preprocessing all run on the
    producer's stream, whose 'ready' event the model's stream then waits for."""
    timer = StageTimer()
    source = StreamWatchingSource(4, fake_gpu, span=timer.span)
    stages = [PlannedStage("h2d", lambda b: b, device=CUDA), PlannedStage("prep", lambda b: b, device=CUDA)]
    producer = producer_for(source, stages, new_event=lambda: FakeEvent(device), timer=timer)
    producer.start()
    try:
        produced = producer.get()
    finally:
        producer.close()
    assert produced is not None and produced.ready is not None
    assert source.streams and all(s is producer.stream for s in source.streams)
    (copied, *_) = fake_gpu["copied"]
    assert copied.untyped_storage().data_ptr() == fake_gpu["pinned"][0].untyped_storage().data_ptr()
    assert "h2d" not in produced.samples and "decode" in produced.samples  # device copy: events; CPU decode


def test_frames_decoded_on_the_gpu_are_timed_on_the_device(
    fake_gpu: dict[str, Any], device: dict[str, Any]
) -> None:
    events = EventTimer(lambda: FakeEvent(device))
    source = StreamWatchingSource(4, fake_gpu, span=events.span)  # as the run gives it: Timers.decode_span
    producer = producer_for(
        source, [PlannedStage("prep", lambda b: b, device=CUDA)], new_event=lambda: FakeEvent(device),
        batch_device=CUDA, events=events,
    )  # fmt: skip
    producer.start()
    try:
        produced = producer.get()
    finally:
        producer.close()
    assert produced is not None and produced.device_samples is not None
    assert "decode" not in produced.samples
    assert {i.name for i in produced.device_samples.intervals} == {"decode", "prep"}
    assert not fake_gpu["pinned"]  # frames already on the device are not pinned


def test_the_model_stream_waits_for_the_batch_and_takes_it_over(
    fake_gpu: dict[str, Any], device: dict[str, Any]
) -> None:
    """Tensors made on the producer's stream are recorded as used on the model's stream, so the caching
    allocator cannot give their memory to the next batch while the model still reads it."""
    seen: list[Any] = []

    def model(batch: Any) -> StepResult:
        seen.append(batch)
        return StepResult(batch)

    plan = StepPlan(
        [
            PlannedStage("h2d", lambda b: b, device=CUDA),
            PlannedStage("prep", lambda b: b, device=CUDA),
            PlannedStage("exec", model, device=CUDA),
        ]
    )
    device["finished"] = True
    rows = run(CountingSource(6), plan, batch_size=2, new_event=lambda: FakeEvent(device))
    assert len(rows) == 3
    assert len(fake_gpu["default"].waited) == 3  # one 'ready' event per batch
    handed = [t for t, s in fake_gpu["handed_over"] if s is fake_gpu["default"]]
    assert [t.data_ptr() for t in handed] == [b.data_ptr() for b in seen]


class DeviceLoss(torch.Tensor):
    """A loss 'on the GPU' for the CPU test: reading it early is what the test must not see."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


def test_a_device_loss_is_copied_without_blocking_and_read_once_ready(device: dict[str, Any]) -> None:
    rows = run(
        CountingSource(4),
        model_plan(loss=torch.tensor(0.25).as_subclass(DeviceLoss)),
        batch_size=2,
        new_event=lambda: FakeEvent(device),
    )
    assert [r["loss"] for r in rows] == [0.25, 0.25]
    assert device["events"] and device["synchronized"] >= 1  # the rows waited for the loss's copy event


def test_max_steps_stops_the_producer() -> None:
    source = CountingSource(None)
    rows = run(source, model_plan(), max_steps=4)
    assert len(rows) == 4
    assert not any(t.name == "framescope-producer" for t in threading.enumerate())


def test_a_failure_in_the_producer_reaches_the_caller_after_the_rows_before_it() -> None:
    rows: list[Row] = []
    with pytest.raises(SourceError, match="the source broke"):
        run(CountingSource(None, fail_at=6), model_plan(), rows=rows)
    assert [r["step"] for r in rows] == [0, 1, 2]


def test_reading_and_the_model_overlap() -> None:
    """Independent timing: a producer needing 30 ms a batch and a model needing 30 ms run at once, so a step
    takes about 30 ms, not 60, and the stage times add up to about twice the wall time."""
    rows = run(CountingSource(None, delay_s=0.015), model_plan(model_s=0.03), batch_size=2, max_steps=10)
    steady = rows[2:]
    wall = np.median([r["total_step_latency_ms"] for r in steady])
    stages = np.median([r["read_latency_ms"] + r["exec_latency_ms"] for r in steady])
    assert 28 <= wall < 48, wall
    assert stages / wall > 1.4


def test_a_slow_producer_shows_as_queue_wait() -> None:
    rows = run(CountingSource(None, delay_s=0.02), model_plan(), batch_size=2, max_steps=6)
    waits = [r["queue_wait_ms"] for r in rows[2:]]
    assert np.median(waits) > 30  # the model waits about 40 ms per batch of two frames


def test_loss_tensors_are_read_when_the_row_is_written() -> None:
    rows = run(CountingSource(4), model_plan(loss=torch.tensor(0.25)), batch_size=2)
    assert [r["loss"] for r in rows] == [0.25, 0.25]


class FakeEvent:
    """Stands in for torch.cuda.Event: 'records' the fake device time, finishes when the test says."""

    def __init__(self, device: dict[str, Any]) -> None:
        self.device = device
        self.at = 0.0

    def record(self) -> None:
        self.at = self.device["time"]
        self.device["events"].append(self)

    def query(self) -> bool:
        return self.device["finished"]

    def synchronize(self) -> None:
        self.device["synchronized"] += 1
        self.device["finished"] = True

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.at - self.at) * 1000.0


@pytest.fixture
def device() -> dict[str, Any]:
    return {"time": 0.0, "events": [], "finished": False, "synchronized": 0}


def test_event_timer_resolves_exclusive_device_times(device: dict[str, Any]) -> None:
    timer = EventTimer(lambda: FakeEvent(device))
    with timer.span("exec"):
        device["time"] += 0.010
        with timer.span("split"):
            device["time"] += 0.002
        device["time"] += 0.005
    with timer.span("post"):
        device["time"] += 0.001
    pending = timer.take()
    assert not pending.done()
    assert pending.resolve() == {
        "exec": pytest.approx(0.015),
        "split": pytest.approx(0.002),
        "post": pytest.approx(0.001),
    }
    assert timer.take().resolve() == {}


def test_rows_wait_for_their_device_work_and_stay_in_order(device: dict[str, Any]) -> None:
    """With a GPU stage after the model, a row is written only once its events are done: the loop never
    synchronises while the device is busy, and synchronises once at the end for what is left."""
    rows: list[Row] = []
    plan = StepPlan(
        [PlannedStage("exec", StepResult), PlannedStage("post", lambda v: v, device=torch.device("cuda"))]
    )
    seen_while_running: list[int] = []

    def on_row(row: Row) -> None:
        rows.append(row)

    def step_hook(_: Any) -> Any:
        seen_while_running.append(len(rows))
        device["time"] += 0.004
        return _

    plan.stages[1].run = step_hook
    run_async(
        CountingSource(6),
        plan,
        collecting_loop([], batch_size=2, on_row=on_row),
        new_event=lambda: FakeEvent(device),
    )
    assert seen_while_running == [0, 0, 0]  # nothing was written while the device had not finished
    assert device["synchronized"] >= 1
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["post_latency_ms"] == pytest.approx(4.0) for r in rows)


def test_worker_threads_can_be_limited_without_touching_the_model() -> None:
    seen: dict[str, Any] = {}

    def worker() -> None:
        seen["limited"] = limit_this_thread(1)
        seen["threads"] = threads_of_this_thread()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    if not seen["limited"]:
        pytest.skip("torch here does not use an OpenMP runtime")
    assert seen["threads"] == 1
    assert torch.get_num_threads() >= 1 and threads_of_this_thread() == torch.get_num_threads()


def test_async_thread_budget_starts_with_every_core() -> None:
    """Before anything is measured the model gets every core and the producer one decode thread; which plan
    is faster is measured during the run (ThreadTrial)."""
    assert plan_threads([0, 1], torch_threads=None, decode_threads=0, pipeline="async") == (2, 1)
    assert plan_threads(list(range(8)), torch_threads=None, decode_threads=0, pipeline="async") == (8, 1)
    assert plan_threads([0, 1], torch_threads=1, decode_threads=3, pipeline="async") == (1, 3)


def test_pace_of_an_async_run_is_the_slower_side() -> None:
    import pandas as pd

    from framescope.records import COLUMNS

    def rows(read: float, decode: float, exec_: float) -> pd.DataFrame:
        data = [
            {"step": i, "read_latency_ms": read, "decode_latency_ms": decode, "exec_latency_ms": exec_,
             "queue_wait_ms": 1.0, "total_step_latency_ms": max(read + decode, exec_), "frames": 1,
             "warmup": 0, "profiled": 0, "step_start_s": i}
            for i in range(3)
        ]  # fmt: skip
        return pd.DataFrame(data, columns=list(COLUMNS))

    assert summarize(rows(5, 40, 30), "async")["pace_stage"] == "decode_latency_ms"
    assert summarize(rows(5, 10, 30), "async")["pace_stage"] == "exec_latency_ms"
    assert summarize(rows(5, 40, 30), "sync")["pace_stage"] == "decode_latency_ms"
    overlapped = summarize(rows(5, 40, 30), "async")
    assert overlapped["stage_sum_over_total"] == pytest.approx(75 / 45)  # queue wait is not stage work


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_async_run_end_to_end(clip: Path, out_dir: Path, decoder: str) -> None:
    config = RunConfig.from_flat(
        model_name="mobilenet_v3_small", input_path=str(clip), decoder=decoder, batch_size=4,
        pipeline="async", output_dir=str(out_dir), progress="none",
    )  # fmt: skip
    result = framescope.run(config)
    rows = result.rows
    assert rows["frames"].sum() == CLIP_FRAMES and list(rows["step"]) == list(range(len(rows)))
    assert rows["queue_wait_ms"].notna().all() and (rows["exec_latency_ms"] > 0).all()
    consumer = rows[["queue_wait_ms", "exec_latency_ms", "post_latency_ms"]].sum(axis=1)
    assert (rows["total_step_latency_ms"] >= consumer).all()
    assert result.summary["pipeline"] == "async" and result.summary["threads"]["decode"] == 1
    sync = framescope.run(config.replace(pipeline="sync"))
    assert list(sync.rows.columns) == list(rows.columns)  # both modes write the same CSV


def test_async_retrain(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), mode="retrain", batch_size=4, max_steps=4,
            pipeline="async", output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert (result.rows["loss"] > 0).all()


def _feed(trial: Any, model_s: dict[int, float], producer_s: dict[int, float], first_step: int = 0) -> int:
    """Run ``trial`` to its end on per-batch (8 frames) model and producer seconds per thread count, which
    may be callables of the step index (noise); returns the trial steps run."""
    index = 0
    while trial.chosen is None:
        threads = trial.schedule[index]
        tag = trial.begin_step(first_step + index, index)
        m, p = model_s[threads], producer_s[threads]
        trial.record_producer(tag, p(index) if callable(p) else p, frames=8)
        trial.record_model(index, m(index) if callable(m) else m, frames=8)
        trial.end_step(index)
        index += 1
    return index


def test_a_thread_trial_interleaves_its_candidates_and_keeps_the_faster() -> None:
    from framescope.pipeline import ThreadTrial

    applied: list[int] = []
    trial = ThreadTrial([1, 2], set_threads=applied.append)
    assert trial.schedule == [1, 1, 2, 2, 2, 2, 1, 1]  # A B, B A: a drift of the machine hits both alike
    # 100 vs 50 ms per frame for the model; the producer needs 20 ms per frame either way
    assert _feed(trial, {1: 0.8, 2: 0.4}, {1: 0.16, 2: 0.16}, first_step=10) == 8  # shown in two rounds
    assert applied == [1, 2, 1, 2]  # switched only when the plan changed, then to the one kept
    assert trial.chosen == 2 and trial.current == 2
    assert trial.rates() == {1: pytest.approx(10.0), 2: pytest.approx(20.0)}
    evidence = trial.evidence()
    assert evidence["chosen"] == 2 and evidence["first_step"] == 10 and evidence["complete"]
    assert evidence["rounds"] == 2 and evidence["shown"] and evidence["ratio"]["value"] == pytest.approx(2.0)
    assert evidence["candidates"][0] == {
        "torch_threads": 1,
        "fps": pytest.approx(10.0),
        "model_ms_per_frame": pytest.approx(100.0),
        "producer_ms_per_frame": pytest.approx(20.0),
        "model_steps": 4,
        "producer_batches": 4,
    }
    assert trial.note() == (
        "async thread plan measured (steps 10-17, 2 rounds): 1 torch thread 10.0 FPS, 2 torch threads "
        "20.0 FPS; 2 over 1 per round 2.00x (95 % CI 2.00-2.00x): kept 2"
    )


def test_a_plan_that_starves_the_producer_loses_even_if_the_model_runs_faster() -> None:
    from framescope.pipeline import ThreadTrial

    trial = ThreadTrial([1, 2], set_threads=lambda n: None)
    _feed(trial, {1: 0.2, 2: 0.1}, {1: 0.16, 2: 0.4})  # the producer: 20 vs 50 ms per frame
    assert trial.chosen == 1
    assert trial.rates()[2] == pytest.approx(20.0)  # the producer's 50 ms per frame, not the model's 12.5


def test_a_close_call_runs_more_rounds_until_one_plan_is_shown_faster() -> None:
    """Two plans 10 % apart under +-8 % noise that does not cancel within a round: two rounds cannot tell
    them apart, so the trial runs rounds until they can (or until its last round)."""
    from framescope.pipeline import ThreadTrial

    wobble = [1.0, 1.08, 0.93, 1.05, 0.96, 1.02, 0.97, 1.06, 0.94, 1.0, 1.03, 0.95] * 4
    trial = ThreadTrial([1, 2], set_threads=lambda n: None)
    steps = _feed(
        trial,
        {1: lambda i: 0.88 * wobble[i], 2: lambda i: 0.8 * wobble[i + 5]},
        {1: 0.1, 2: 0.1},
    )
    assert steps > 8 and steps % 4 == 0 and trial.rounds == steps // 4
    assert trial.chosen == 2
    evidence = trial.evidence()
    assert evidence["shown"] and evidence["ratio"]["low"] > 1 and evidence["complete"]
    assert trial.note().endswith("x): kept 2")


def test_plans_that_cannot_be_told_apart_stop_at_the_last_round_and_keep_the_faster_estimate() -> None:
    from framescope.pipeline import ThreadTrial

    wobble = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02]
    trial = ThreadTrial([1, 2], max_rounds=4, set_threads=lambda n: None)
    steps = _feed(
        trial, {1: lambda i: 0.8 * wobble[i % 6], 2: lambda i: 0.8 * wobble[(i + 3) % 6]}, {1: 0, 2: 0}
    )
    assert steps == 16 and trial.rounds == 4 and trial.chosen in (1, 2)
    evidence = trial.evidence()
    assert not evidence["shown"] and evidence["max_rounds"] == 4
    rates = trial.rates()
    faster = 2 if rates[2] > rates[1] else 1  # the pooled rates choose, the rounds only decide when to stop
    assert trial.chosen == faster
    assert trial.note().endswith(f"x), not shown in 4 rounds: kept {faster}, the faster estimate")


def test_a_plan_the_rounds_show_faster_is_kept_even_where_the_pooled_medians_disagree() -> None:
    """Plan 1's model is slow in one round and its producer in the other: each round's slower side is 100 ms a
    frame, against plan 2's steady 95, yet pooling the sides' medians over rounds hides that (75 ms)."""
    from framescope.pipeline import ThreadTrial

    trial = ThreadTrial([1, 2], set_threads=lambda n: None)
    _feed(
        trial,
        {1: lambda i: 0.8 if i < 4 else 0.4, 2: 0.76},
        {1: lambda i: 0.4 if i < 4 else 0.8, 2: 0.76},
    )
    assert trial.rates()[1] > trial.rates()[2]  # pooled: plan 1 looks faster
    evidence = trial.evidence()
    assert evidence["shown"] and evidence["ratio"]["value"] == pytest.approx(100 / 95)
    assert trial.chosen == 2 and trial.note().endswith("per round 1.05x (95 % CI 1.05-1.05x): kept 2")


def test_the_trial_takes_as_many_rounds_as_the_run_affords() -> None:
    from framescope.pipeline import trial_rounds

    assert trial_rounds(None, 2, 4) == 6  # an endless input affords every round
    assert trial_rounds(60, 2, 4) == 6  # 58 steps: 24 on the trial leave 34
    assert trial_rounds(40, 2, 4) == 4  # 38 steps: 16 on the trial leave 22
    assert trial_rounds(18, 2, 4) == 2
    assert trial_rounds(17, 2, 4) == 0  # not even two rounds leave as many steady steps


def test_the_producer_reports_each_batch_when_it_is_made_not_when_it_is_taken() -> None:
    """The trial hears of a window's batches while that window's plan is measured, not a queue later."""
    made: list[Any] = []
    producer = producer_for(CountingSource(None), [], on_made=made.append)
    producer.tag = 7
    producer.start()
    try:
        deadline = time.monotonic() + 10
        while len(made) < 3 and time.monotonic() < deadline:  # two in the queue, a third waiting to go in
            time.sleep(0.01)
        assert len(made) == 3 and [item.tag for item in made] == [7, 7, 7]
        assert producer.queue.qsize() == 2  # nothing was taken
    finally:
        producer.close()


def test_the_async_loop_runs_the_trial_after_the_warm_up() -> None:
    """A model that is 4x faster on two threads, a producer that costs nothing: the trial keeps two. The
    model's time runs on a fake clock, so the measured rates are exact."""
    from framescope.pipeline import ThreadTrial

    plan = {"threads": 1}
    clock = FakeClock()

    def model(batch: Any) -> StepResult:
        clock.advance(0.004 * len(batch) / plan["threads"] ** 2)
        return StepResult(batch)

    trial = ThreadTrial([1, 2], set_threads=lambda n: plan.update(threads=n))
    rows: list[Row] = []
    loop = collecting_loop(
        rows, batch_size=2, max_steps=14, warmup_steps=2, clock=clock, timer=StageTimer(clock)
    )
    stages = StepPlan([PlannedStage("prep", lambda b: b), PlannedStage("exec", model)])
    run_async(CountingSource(None), stages, loop, trial=trial)
    assert trial.chosen == 2 and trial.complete and trial.evidence()["first_step"] == 2
    assert trial.rates()[1] == pytest.approx(250.0) and trial.rates()[2] == pytest.approx(1000.0)
    assert [r["warmup"] for r in rows] == [1] * 10 + [0] * 4  # 2 warm-up + 8 trial steps (shown in 2 rounds)
    assert plan["threads"] == 2


def test_a_run_that_ends_inside_the_trial_keeps_what_it_measured() -> None:
    from framescope.pipeline import ThreadTrial

    trial = ThreadTrial([1, 2], set_threads=lambda n: None)
    rows = run(CountingSource(10), model_plan(), batch_size=2, trial=trial)
    assert len(rows) == 5 and not trial.complete and trial.chosen is not None
    assert "cut short after 5 of 8 steps" in trial.note()
