"""The asynchronous pipeline: reading, decoding and the stages before the model run ahead in a producer
thread that fills a bounded queue; the calling thread takes batches from it and runs the model, the
post-processing and the copies back. The time the model waited for input is ``queue_wait``.

On a GPU the producer copies batches from pinned host memory with non-blocking copies on its own CUDA stream
and records an event the model's stream waits on, so the host never blocks on a copy; device stages are
timed with CUDA events, resolved once the device has run them, and a step's row is written as soon as its
device work is done, without a host synchronisation per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import queue
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from framescope.instrument import StageTimer, nvtx_range
from framescope.instrument.events import DeviceEvent, EventTimer, PendingSamples, cuda_event
from framescope.models import on_device
from framescope.pipeline._batcher import read_batch
from framescope.pipeline._loop import loss_value
from framescope.pipeline._omp import limit_this_thread
from framescope.pipeline._stages import PlannedStage, StepPlan, move, run_stages
from framescope.pipeline._step import FramesInfo, LiveCounter, LoopSettings, StepTiming
from framescope.pipeline._trial import ThreadTrial
from framescope.sources import Frame, Source
from framescope.stages import PRODUCER_STAGES, Stage

_END = object()
_POLL_S = 0.1


@dataclass(slots=True)
class _Failure:
    error: BaseException


@dataclass(slots=True)
class Produced:
    """A batch the producer has made ready for the model."""

    frames: list[Frame]
    value: Any
    samples: dict[str, float]
    """Host-timed producer stages, seconds."""
    device_samples: PendingSamples | None = None
    """Event-timed producer stages (copies and preprocessing on the GPU)."""
    ready: Any = None
    """The CUDA event the model's stream waits on before using ``value``."""
    tag: Any = None
    """The producer's :attr:`Producer.tag` when it started this batch (the thread plan under trial)."""


def _async_copy(value: Any, device: torch.device) -> Any:
    """A non-blocking host-to-device copy. The producer stacks batches that go to the GPU straight into pinned
    memory while reading them (:func:`~framescope.pipeline._batcher.collate`), so this is the device copy
    alone: a host-side pinning here would be host time counted as ``h2d``."""
    return move(value, device, non_blocking=True)


def _use_on_current_stream(value: Any) -> None:
    """Tell the caching allocator that ``value``'s device tensors, made on the producer's stream, are used on
    this (the model's) stream: without it, their memory could be handed to the producer's next batch while
    the model still reads them."""
    if isinstance(value, torch.Tensor):
        if on_device(value):
            value.record_stream(torch.cuda.current_stream(value.device))
    elif isinstance(value, list | tuple):
        for item in value:
            _use_on_current_stream(item)
    elif isinstance(value, dict):
        for item in value.values():
            _use_on_current_stream(item)


def _timed(
    timer: StageTimer, events: EventTimer | None
) -> Callable[[PlannedStage], AbstractContextManager[Any]]:
    """Spans for a stage: CUDA events for work on the GPU where ``events`` is given, the host timer else."""

    def timed(stage: PlannedStage) -> AbstractContextManager[Any]:
        span = events.span if events is not None and stage.on_gpu else timer.span
        return span(stage.name)

    return timed


class Producer:
    """Runs reading, decoding and ``stages`` in a background thread, ``depth`` batches ahead."""

    def __init__(
        self,
        source: Source,
        stages: list[PlannedStage],
        loop: LoopSettings,
        *,
        depth: int,
        new_event: Callable[[], DeviceEvent] = cuda_event,
        batch_device: torch.device | None = None,
        timer: StageTimer | None = None,
        events: EventTimer | None = None,
        on_made: Callable[[Produced], None] | None = None,
    ) -> None:
        """``timer`` and ``events`` time the producer's host and device stages (made here when not given:
        the run makes them first, because the source it opens early decodes inside their spans);
        ``on_made`` hears of each batch as soon as it is made, in the producer's thread."""
        self.source = source
        # copies to the device come from pinned memory (stacked there while reading) and do not block
        self.stages = [
            dataclasses.replace(stage, run=functools.partial(_async_copy, device=stage.device))
            if stage.name == Stage.H2D
            else stage
            for stage in stages
        ]
        self.pin = bool(stages) and stages[0].name == Stage.H2D and stages[0].on_gpu
        self.decode_on_gpu = batch_device is not None and batch_device.type == "cuda"
        self.batch_size = loop.batch_size
        self.batcher = loop.batcher
        self.new_event = new_event
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="framescope-producer", daemon=True)
        self.gpu = self.decode_on_gpu or any(stage.on_gpu for stage in stages)
        self.stream: Any = torch.cuda.Stream() if self.gpu else None
        self.timer = timer or StageTimer(loop.clock)
        self.events = (events or EventTimer(new_event)) if self.gpu else None
        self.tag: Any = None
        """Set by the consumer; stamped on each batch when the producer starts it."""
        self.on_made = on_made
        self._held: Any = None
        self._dropped_seen = 0
        self._newest_first = bool(source.info.live and source.info.extra.get("newest_first"))

    def start(self) -> None:
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> Produced | None:
        timer, events = self.timer, self.events
        timer.reset()
        tag = self.tag
        ready = None
        # Everything the producer does on the GPU happens on its own stream, reading included: frames decoded
        # there (torchcodec converts NVDEC's output on the current stream) and their stacking must be ordered
        # before the preprocessing that reads them, and their memory belongs to this stream's pool.
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            with timer.span(Stage.READ):
                read = read_batch(self.source, self.batch_size, pin=self.pin, batcher=self.batcher)
            if read is None:
                return None
            frames, value = read
            value, _ = run_stages(self.stages, value, _timed(timer, events))
            if self.stream is not None:
                ready = self.new_event()
                ready.record()
        pending = events.take() if events is not None else None
        return Produced(frames, value, dict(timer.samples), pending, ready, tag)

    def _run(self) -> None:
        try:
            limit_this_thread(1)  # preprocessing here must not start a second team of intra-op threads
            while not self._stop.is_set():
                produced = self._produce()
                if produced is None:
                    self._put(_END)
                    return
                if self.on_made is not None:
                    self.on_made(produced)
                if not self._put(produced):
                    return
                if len(produced.frames) < self.batch_size and not self.source.info.live:
                    self._put(_END)  # a short batch from a finite input is its last
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it in the calling thread
            self._put(_Failure(exc))

    def get(self) -> Produced | None:
        """The next batch, None at the end of the input; a failure in the producer is raised here. For a
        live input that processes its newest frames and fell behind (it dropped frames since the last batch),
        the newest batch waiting: older ones are stale (their frames count as dropped)."""
        item = self._held if self._held is not None else self.queue.get()
        self._held = None
        behind = self.source.dropped > self._dropped_seen  # the input overflowed since the last batch
        self._dropped_seen = self.source.dropped
        while self._newest_first and behind and isinstance(item, Produced):
            try:
                newer = self.queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(newer, Produced):
                self._held = newer  # the end or a failure: after this batch
                break
            self.source.discard_batch(item.frames)
            item = newer
        if item is _END:
            return None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the producer (it may be blocked on a full queue or a read) and wait for it."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
        self._thread.join(timeout_s)


@dataclass
class _PendingRow:
    """A step whose row waits for its device work: everything but the device-timed stages is known."""

    timing: StepTiming
    device: list[PendingSamples] = field(default_factory=list)
    loss: Any = None
    loss_ready: DeviceEvent | None = None
    """Recorded after the loss's non-blocking copy to the host: the row reads it only once this is done."""

    def done(self) -> bool:
        return all(p.done() for p in self.device) and (self.loss_ready is None or self.loss_ready.query())

    def finish(self) -> StepTiming:
        if self.loss_ready is not None:
            self.loss_ready.synchronize()  # returns at once after done(); waits at the end of a run
        samples = self.timing.samples
        for pending in self.device:
            for stage, seconds in pending.resolve().items():
                samples[stage] = samples.get(stage, 0.0) + seconds
        self.timing.loss = loss_value(self.loss)  # read only now: a device loss's copy is done
        return self.timing


def run_async(
    source: Source,
    plan: StepPlan,
    loop: LoopSettings,
    *,
    depth: int = 2,
    new_event: Callable[[], DeviceEvent] = cuda_event,
    events: EventTimer | None = None,
    producer_timer: StageTimer | None = None,
    producer_events: EventTimer | None = None,
    trial: ThreadTrial | None = None,
) -> int:
    """The model's side of the pipeline; the producer runs ``plan``'s stages before the model. Steps go to
    ``loop.on_step`` in step order, each once its device work (if any) is done. GPU stages on this side are
    timed by ``events`` (made here when not given), the producer's by ``producer_timer`` and
    ``producer_events``. With a ``trial``, the steps right after the warm-up measure its candidate thread
    plans (recorded as warm-up steps) and the faster is kept. Returns the number of steps run."""
    timer, clock, cpu_clock = loop.timer, loop.clock, loop.cpu_clock
    ahead, behind = plan.split_at_model()
    # the producer's own work per batch; a live input's read is waiting for frames to arrive
    producer_stages = [s for s in PRODUCER_STAGES if not (source.info.live and s is Stage.READ)]

    def made(item: Produced) -> None:  # in the producer's thread, as soon as the batch is made
        if trial is not None:  # it keeps a batch only while the trial is undecided
            busy = sum(item.samples.get(s, 0.0) for s in producer_stages)
            trial.record_producer(item.tag, busy, len(item.frames))

    producer = Producer(
        source, ahead, loop, depth=depth, new_event=new_event, batch_device=plan.batch_device,
        timer=producer_timer, events=producer_events, on_made=made if trial is not None else None,
    )  # fmt: skip
    if events is None and any(stage.on_gpu for stage in behind):
        events = EventTimer(new_event)
    timed = _timed(timer, events)
    waiting: deque[_PendingRow] = deque()

    def flush(block: bool) -> None:
        while waiting and (block or waiting[0].done()):
            loop.on_step(waiting.popleft().finish())

    producer.start()
    live = LiveCounter(source)
    step = 0
    first_start: float | None = None
    try:
        while (loop.max_steps is None or step < loop.max_steps) and not loop.stopping(step):
            trial_index = step - loop.warmup_steps
            in_trial = trial is not None and 0 <= trial_index < trial.steps
            if trial is not None and in_trial:
                producer.tag = trial.begin_step(step, trial_index)
            threads_now = torch.get_num_threads()
            timer.reset()
            cpu_start = cpu_clock()
            start = clock()
            with nvtx_range(f"step {step}"):
                with timer.span(Stage.QUEUE_WAIT):
                    item = producer.get()
                if item is None:
                    break
                if item.ready is not None:
                    torch.cuda.current_stream().wait_event(item.ready)
                    _use_on_current_stream(item.value)
                _, loss = run_stages(behind, item.value, timed)
            end = clock()
            if first_start is None:
                first_start = start
            frames = FramesInfo.of(item.frames)
            if trial is not None and in_trial and trial.chosen is None:
                busy = end - start - timer.samples.get(Stage.QUEUE_WAIT, 0.0)
                trial.record_model(trial_index, busy, frames.count)
                trial.end_step(trial_index)  # decides, or plans another round
            timing = StepTiming(
                step=step,
                samples={**item.samples, **timer.samples},
                frames=frames,
                total_s=end - start,
                warmup=step < loop.warmup_steps or in_trial,
                profiled=loop.profiler.traced(step),
                cpu_time_s=cpu_clock() - cpu_start,
                step_start_s=start - first_start,
                ready_s=end,
                live=live.take(),
                torch_threads=threads_now,
            )
            loss_ready = None
            if isinstance(loss, torch.Tensor) and loss.is_cuda:
                # reading a device loss (float(loss)) would make the host wait for the step; copy it to the
                # host without blocking and read it when the row is written
                loss = loss.detach().to("cpu", non_blocking=True)
                loss_ready = new_event()
                loss_ready.record()
            pending = _PendingRow(timing, loss=loss, loss_ready=loss_ready)
            if item.device_samples is not None:
                pending.device.append(item.device_samples)
            if events is not None:
                pending.device.append(events.take())
            waiting.append(pending)
            flush(block=False)
            loop.profiler.step()
            step += 1
    finally:
        producer.close()
        flush(block=True)
        if trial is not None and trial.steps_run and trial.chosen is None:
            trial.decide()  # the run ended inside the trial: keep what it measured so far
    return step
