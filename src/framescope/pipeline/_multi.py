"""Several models on every frame: the batch is read and decoded once, then each model runs its own stages
(copies, preprocessing, the model, post-processing) on it, under one of the strategies below. The step ends
when every model has finished.

* ``serial``: one model after another in the loop's thread.
* ``threads``: one worker thread per model; the batch is handed to each and the step waits for all. A model
  whose work releases the GIL (torch's kernels do) overlaps with another's Python and kernels.
* ``asyncio``: each model's blocking call awaited in a coroutine, as the seed wrote it. A coroutine gives the
  event loop back only at an ``await`` of something not finished yet, and a blocking call is no such thing,
  so the models run one after another: serial, plus the event loop's cost.
* ``asyncio-threads``: the same coroutines awaiting ``asyncio.to_thread(model, batch)``: now they overlap, as
  threads do.
* ``streams``: one thread, one CUDA stream per model: each model's work up to the model is queued on its
  stream, then each model's results are collected, so the device overlaps the models' kernels.
* ``processes`` lives in :mod:`framescope._multi_proc` (it builds its models in its worker processes).

The pipeline measures; the recorder turns each :class:`MultiStepTiming` into rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from framescope.instrument import Clock, StageTimer, nvtx_range
from framescope.models import StepResult
from framescope.pipeline._batcher import read_batch
from framescope.pipeline._stages import PlannedStage, StepPlan
from framescope.pipeline._step import FramesInfo
from framescope.sources import Source
from framescope.stages import Stage

STRATEGIES = ("serial", "threads", "asyncio", "asyncio-threads", "processes", "streams")
"""Every way to run several models per frame (``--multi-model all`` runs each that applies in turn)."""

CONCURRENT = frozenset({"threads", "asyncio-threads", "processes"})
"""The strategies that run the models' host work at once (they share the cores)."""


@dataclass(slots=True)
class ModelTiming:
    """One model's part of one step."""

    samples: dict[str, float]
    """Seconds per stage (prep, exec, post and copies), exclusive of nested stages."""
    start_s: float
    """When the model started on the batch, on the run's clock."""
    end_s: float
    """When its results were ready."""

    @property
    def work_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(slots=True)
class MultiStepTiming:
    """One step of every model, as the loop measured it."""

    step: int
    read: dict[str, float]
    """The shared stages (read, decode), seconds."""
    frames: FramesInfo
    read_s: float
    """Wall time of reading the batch (decoding included)."""
    handoff_s: float
    """Handing the batch over (processes: copying it into shared memory); 0 for the others."""
    dispatch_s: float
    """When the models got the batch, on the run's clock."""
    models: dict[str, ModelTiming]
    warmup: bool
    profiled: bool
    step_start_s: float
    """When the step started, seconds after the first step started."""

    @property
    def done_s(self) -> float:
        """When the last model finished, on the run's clock."""
        return max(t.end_s for t in self.models.values())

    @property
    def total_s(self) -> float:
        """The frame-level step: reading, the hand-over, and until every model finished."""
        return self.read_s + self.handoff_s + (self.done_s - self.dispatch_s)


class SharedPrep:
    """Preprocessing shared by models that need the same transform: the first model to reach a batch
    preprocesses it, the others take its output (under threads they wait for it: that is their prep time)."""

    def __init__(self, prep: Callable[[Any], Any]) -> None:
        self.prep = prep
        self._lock = threading.Lock()
        self._input: Any = None
        self._output: Any = None

    def __call__(self, batch: Any) -> Any:
        with self._lock:
            if batch is not self._input:
                self._output = self.prep(batch)
                self._input = batch
            return self._output


@contextlib.contextmanager
def _labelled(timer: StageTimer, stage: str, label: str) -> Iterator[None]:
    """The stage's span inside a range named for the model (``resnet18/exec``), so that an Nsight or
    torch.profiler timeline tells the models apart."""
    with nvtx_range(label):
        if torch.autograd._profiler_enabled():
            with torch.profiler.record_function(label), timer.span(stage):
                yield
        else:
            with timer.span(stage):
                yield


@dataclass
class ModelWork:
    """One model's stages after the shared read, with its own stage timer (each model may run in its own
    thread)."""

    name: str
    plan: StepPlan
    timer: StageTimer
    clock: Clock
    stream: Any = None
    """``streams``/``threads`` on a GPU: the model's CUDA stream (None: the current one)."""

    def run_stages(self, stages: Sequence[PlannedStage], value: Any) -> Any:
        for stage in stages:
            with _labelled(self.timer, stage.name, f"{self.name}/{stage.name}"):
                value = stage.run(value)
            if isinstance(value, StepResult):
                value = value.output
        return value

    def __call__(self, batch: Any) -> ModelTiming:
        self.timer.reset()
        start = self.clock()
        self.run_stages(self.plan.stages, batch)
        return ModelTiming(dict(self.timer.samples), start, self.clock())


class Strategy(Protocol):
    name: str

    def start(self) -> None: ...

    def run(self, batch: Any, names: Sequence[str]) -> dict[str, ModelTiming]:
        """Run the models ``names`` on ``batch``; return when all have finished."""
        ...

    def close(self) -> None: ...


class ModelFailed(Exception):
    """A model failed during a step; ``model`` names it, the cause is chained."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model


class SerialStrategy:
    """One model after another, in the calling thread."""

    name = "serial"

    def __init__(self, works: Sequence[ModelWork]) -> None:
        self.works = {w.name: w for w in works}

    def start(self) -> None:
        pass

    def run(self, batch: Any, names: Sequence[str]) -> dict[str, ModelTiming]:
        return {name: self.works[name](batch) for name in names}

    def close(self) -> None:
        pass


class _Worker:
    """A thread that runs one model on each batch it is handed."""

    def __init__(self, work: ModelWork, torch_threads: int, done: queue.Queue[Any]) -> None:
        self.work, self.torch_threads, self.done = work, torch_threads, done
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._main, name=f"framescope-{work.name}", daemon=True)

    def _main(self) -> None:
        failure: BaseException | None = None
        try:
            torch.set_num_threads(self.torch_threads)  # per thread: the OpenMP team of this thread's kernels
            if self.work.stream is not None:
                torch.cuda.set_stream(self.work.stream)
        except BaseException as exc:  # every batch is answered, or the loop would wait for ever
            failure = exc
        while (batch := self.inbox.get()) is not None:
            try:
                if failure is not None:
                    raise failure
                self.done.put((self.work.name, self.work(batch), None))
            except BaseException as exc:  # handed to the loop's thread, which ends the run with it
                self.done.put((self.work.name, None, exc))


class ThreadStrategy:
    """One worker thread per model; each step hands the batch to every worker and waits for all of them."""

    name = "threads"

    def __init__(self, works: Sequence[ModelWork], *, torch_threads: int) -> None:
        self.done: queue.Queue[Any] = queue.Queue()
        self.workers = {w.name: _Worker(w, torch_threads, self.done) for w in works}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.thread.start()

    def run(self, batch: Any, names: Sequence[str]) -> dict[str, ModelTiming]:
        for name in names:
            self.workers[name].inbox.put(batch)
        results: dict[str, ModelTiming] = {}
        failure: tuple[str, BaseException] | None = None
        for _ in names:  # every worker finishes its batch before the step ends, even after a failure
            name, timing, exc = self.done.get()
            if exc is not None and failure is None:
                failure = (name, exc)
            elif timing is not None:
                results[name] = timing
        if failure is not None:
            raise ModelFailed(failure[0], f"{type(failure[1]).__name__}: {failure[1]}") from failure[1]
        return {name: results[name] for name in names}

    def close(self) -> None:
        for worker in self.workers.values():
            if worker.thread.is_alive():
                worker.inbox.put(None)
        for worker in self.workers.values():
            if worker.thread.is_alive():
                worker.thread.join()


class AsyncioStrategy:
    """Each model in a coroutine, all gathered per step. ``to_thread=False``: the coroutine calls the model,
    which blocks the event loop until it returns (the seed's way: no overlap). ``to_thread=True``: it awaits
    ``asyncio.to_thread``, so the models run in the event loop's worker threads at once."""

    def __init__(self, works: Sequence[ModelWork], *, to_thread: bool, torch_threads: int) -> None:
        self.works = {w.name: w for w in works}
        self.to_thread = to_thread
        self.name = "asyncio-threads" if to_thread else "asyncio"
        self.torch_threads = torch_threads
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        if self.to_thread:
            self.pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=len(self.works),
                thread_name_prefix="framescope-asyncio",
                initializer=torch.set_num_threads,
                initargs=(self.torch_threads,),
            )
            self.loop.set_default_executor(self.pool)  # what asyncio.to_thread runs in

    async def _one(self, name: str, batch: Any) -> ModelTiming:
        work = self.works[name]
        if self.to_thread:
            return await asyncio.to_thread(work, batch)
        return work(batch)  # a blocking call: nothing here ever yields to the event loop

    async def _all(self, batch: Any, names: Sequence[str]) -> list[ModelTiming | BaseException]:
        tasks = [asyncio.create_task(self._one(name, batch)) for name in names]
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    def run(self, batch: Any, names: Sequence[str]) -> dict[str, ModelTiming]:
        assert self.loop is not None, "start() first"
        outcomes = self.loop.run_until_complete(self._all(batch, names))
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise ModelFailed(name, f"{type(outcome).__name__}: {outcome}") from outcome
        return dict(zip(names, outcomes, strict=True))  # type: ignore[arg-type]

    def close(self) -> None:
        if self.loop is None:
            return
        if self.pool is not None:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()
        self.loop = None


@dataclass
class StreamStrategy:
    """One CUDA stream per model, in one thread: each model's stages up to and including the model are
    queued on its stream, then each model's remaining stages (the copy back, post-processing) run in turn.
    The model's ``exec`` time is its stream's device time between two events (stage spans do not
    synchronise here: they would serialise the streams). ``stream_context`` and ``new_event`` are
    injectable, so the logic is tested on the CPU with fakes."""

    works: Sequence[ModelWork]
    stream_context: Callable[[Any], contextlib.AbstractContextManager[Any]] = field(default=torch.cuda.stream)
    new_event: Callable[[], Any] = field(default=lambda: torch.cuda.Event(enable_timing=True))
    name: str = "streams"

    def start(self) -> None:
        pass

    def run(self, batch: Any, names: Sequence[str]) -> dict[str, ModelTiming]:
        works = [w for w in self.works if w.name in names]
        launched: list[tuple[ModelWork, Any, float, Any, Any, list[PlannedStage]]] = []
        for work in works:
            before, after = work.plan.split_at_model()
            model_stage, rest = after[0], after[1:]
            work.timer.reset()
            start = work.clock()
            began, ended = self.new_event(), self.new_event()
            with self.stream_context(work.stream):
                value = work.run_stages(before, batch)
                began.record(work.stream)
                value = work.run_stages([model_stage], value)
                ended.record(work.stream)
            launched.append((work, value, start, began, ended, rest))
        results: dict[str, ModelTiming] = {}
        for work, value, start, began, ended, rest in launched:
            with self.stream_context(work.stream):
                work.run_stages(rest, value)
            ended.synchronize()
            samples = dict(work.timer.samples)
            samples[Stage.EXEC] = began.elapsed_time(ended) / 1000.0  # milliseconds -> seconds
            results[work.name] = ModelTiming(samples, start, work.clock())
        return results

    def close(self) -> None:
        pass


@dataclass
class MultiLoop:
    """What the multi-model loop needs, passed once."""

    batch_size: int
    max_steps: int | None
    warmup_steps: int
    solo_steps: int
    read_timer: StageTimer
    """The loop thread's timer for the shared stages (the source decodes inside its span)."""
    clock: Clock
    on_step: Callable[[MultiStepTiming], None]
    on_solo: Callable[[str, int, ModelTiming], None] = lambda name, step, timing: None
    before_step: Callable[[int], None] = lambda step: None
    """Called with each step's number before the models get its batch (an error then names the step)."""
    """Each solo step of each model (model, solo step, timing): kept out of the rows."""
    profiler: Any = None
    should_stop: Callable[[], bool] | None = None
    handoff: Callable[[Any], float] = lambda batch: 0.0
    """Prepares the strategy's copy of the batch (processes: shared memory); returns the seconds it took."""


def _read(source: Source, loop: MultiLoop) -> tuple[Any, float] | None:
    loop.read_timer.reset()
    start = loop.clock()
    with loop.read_timer.span(Stage.READ):
        read = read_batch(source, loop.batch_size)
    if read is None:
        return None
    return (read, loop.clock() - start)


def run_models(source: Source, strategy: Strategy, names: Sequence[str], loop: MultiLoop) -> int:
    """Each model alone on the first ``loop.solo_steps`` batches (its solo figure), then every model on
    every batch from the first, under ``strategy``, until the input ends or ``loop.max_steps``. Returns the
    steps run together."""
    ahead: list[tuple[Any, float, dict[str, float]]] = []
    for _ in range(loop.solo_steps if len(names) > 1 else 0):
        got = _read(source, loop)
        if got is None:
            break
        ahead.append((*got, dict(loop.read_timer.samples)))
        if len(got[0][0]) < loop.batch_size and not source.info.live:
            break
    for name in names:
        for solo_step, ((_, batch), _, _) in enumerate(ahead):
            loop.on_solo(name, solo_step, strategy.run(batch, [name])[name])
    step = 0
    first_start: float | None = None
    while (loop.max_steps is None or step < loop.max_steps) and not (
        step > 0 and loop.should_stop is not None and loop.should_stop()
    ):
        if ahead:
            (frames, batch), read_s, read_samples = ahead.pop(0)
            start = loop.clock() - read_s
        else:
            start = loop.clock()
            got = _read(source, loop)
            if got is None:
                break
            (frames, batch), read_s = got
            read_samples = dict(loop.read_timer.samples)
        first_start = start if first_start is None else first_start
        with nvtx_range(f"step {step}"):
            loop.before_step(step)
            handoff_s = loop.handoff(batch)
            dispatch = loop.clock()
            models = strategy.run(batch, names)
        loop.on_step(
            MultiStepTiming(
                step=step,
                read=read_samples,
                frames=FramesInfo.of(frames),
                read_s=read_s,
                handoff_s=handoff_s,
                dispatch_s=dispatch,
                models=models,
                warmup=step < loop.warmup_steps,
                profiled=loop.profiler.traced(step) if loop.profiler is not None else False,
                step_start_s=start - first_start,
            )
        )
        if loop.profiler is not None:
            loop.profiler.step()
        step += 1
        if len(frames) < loop.batch_size and not source.info.live:
            break
    return step
