"""Every stage timer of a run, made before anything else so that each part can be given its span up front.

Sync: one host timer for every stage; on a GPU it synchronises the device around each stage
(``cuda-sync``). Async: a host timer for each side (the model's thread and the producer's), plus CUDA-event
timers for the device stages on each side (``cuda-events``). The source decodes inside the span of whichever
timer its thread uses, so it gets :meth:`Timers.decode_span` when it is built.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from framescope.instrument import Clock, StageTimer
from framescope.instrument.events import CUDA_EVENTS, DeviceEvent, EventTimer, cuda_event

SpanFactory = Callable[[str], contextlib.AbstractContextManager[Any]]


@dataclass
class Timers:
    model: StageTimer
    """The calling thread's host timer (the model's side)."""
    events: EventTimer | None = None
    """Async on a GPU: device stages on the model's side."""
    producer: StageTimer | None = None
    """Async: the producer thread's host timer."""
    producer_events: EventTimer | None = None
    """Async on a GPU: the producer's device stages (copies, GPU preprocessing, GPU decoding)."""

    @classmethod
    def for_run(
        cls,
        clock: Clock,
        *,
        asynchronous: bool,
        cuda: bool,
        new_event: Callable[[], DeviceEvent] = cuda_event,
    ) -> Timers:
        if not asynchronous:
            # sync: stages bracketed by device synchronisation on a GPU; per-stage CPU use means something
            # only while one stage runs at a time
            return cls(
                StageTimer(clock, sync=torch.cuda.synchronize if cuda else None, cpu_clock=time.process_time)
            )
        if not cuda:
            return cls(StageTimer(clock), producer=StageTimer(clock))
        timers = cls(StageTimer(clock), EventTimer(new_event), StageTimer(clock), EventTimer(new_event))
        timers.model.method = CUDA_EVENTS
        return timers

    @property
    def method(self) -> str:
        """How stage times were taken (``host-wall``, ``cuda-sync`` or ``cuda-events``)."""
        return self.model.method

    def decode_span(self, *, decode_on_gpu: bool) -> SpanFactory:
        """The span sources decode inside: the producer's in the async pipeline (on the device for frames
        decoded there), the only timer's otherwise."""
        if self.producer is None:
            return self.model.span
        if decode_on_gpu and self.producer_events is not None:
            return self.producer_events.span
        return self.producer.span

    def device_span(self, *, on_gpu: bool) -> SpanFactory:
        """The span for work on the model's side that runs on the GPU (a split model's transfer)."""
        return self.events.span if on_gpu and self.events is not None else self.model.span

    def discard_warmup(self) -> None:
        """The untimed warm-up runs code that opens spans of its own (a split model's transfer): forget what
        they recorded, or the first step would include the warm-up's."""
        self.model.reset()
        for events in (self.events, self.producer_events):
            if events is not None:
                events.take()
