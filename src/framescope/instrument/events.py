"""Device timing with CUDA events: spans record events on the current stream instead of reading a clock,
and durations are resolved once the device has run the work, so the host never waits for it (timing method
``cuda-events``). The event type is injectable, so the logic is tested on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from framescope.instrument.spans import nvtx_pop, nvtx_push

CUDA_EVENTS = "cuda-events"


class DeviceEvent(Protocol):
    def record(self) -> None: ...
    def query(self) -> bool: ...
    def synchronize(self) -> None: ...
    def elapsed_time(self, end: Any) -> float: ...


def cuda_event() -> DeviceEvent:
    import torch

    return torch.cuda.Event(enable_timing=True)


@dataclass(slots=True)
class _Interval:
    name: str
    start: DeviceEvent
    end: DeviceEvent | None
    parent: int | None


class PendingSamples:
    """The device intervals of one step, resolvable into stage durations once the device finished them."""

    def __init__(self, intervals: list[_Interval]) -> None:
        self.intervals = intervals

    def done(self) -> bool:
        """Whether the device has finished every interval (never blocks)."""
        return all(i.end is not None and i.end.query() for i in self.intervals)

    def resolve(self) -> dict[str, float]:
        """Exclusive seconds per stage; waits for the device where it has not finished yet."""
        durations = []
        for interval in self.intervals:
            assert interval.end is not None, f"span {interval.name!r} was never closed"
            interval.end.synchronize()
            durations.append(interval.start.elapsed_time(interval.end) / 1000.0)
        exclusive = list(durations)
        for index, interval in enumerate(self.intervals):
            if interval.parent is not None:
                exclusive[interval.parent] -= durations[index]
        samples: dict[str, float] = {}
        for interval, seconds in zip(self.intervals, exclusive, strict=True):
            samples[interval.name] = samples.get(interval.name, 0.0) + seconds
        return samples


class _EventSpan:
    __slots__ = ("index", "name", "timer")

    def __init__(self, timer: EventTimer, name: str) -> None:
        self.timer = timer
        self.name = name
        self.index = -1

    def __enter__(self) -> None:
        nvtx_push(self.name)
        timer = self.timer
        start = timer.new_event()
        start.record()
        parent = timer._open[-1] if timer._open else None
        self.index = len(timer._intervals)
        timer._intervals.append(_Interval(self.name, start, None, parent))
        timer._open.append(self.index)

    def __exit__(self, *exc: object) -> None:
        timer = self.timer
        try:
            end = timer.new_event()
            end.record()
            timer._intervals[self.index].end = end
            timer._open.pop()
        finally:
            nvtx_pop()


class EventTimer:
    """``with timer.span("exec"):`` records a start and an end event around the block's device work."""

    method = CUDA_EVENTS

    def __init__(self, new_event: Callable[[], DeviceEvent] = cuda_event) -> None:
        self.new_event = new_event
        self._intervals: list[_Interval] = []
        self._open: list[int] = []

    def span(self, name: str) -> _EventSpan:
        return _EventSpan(self, name)

    def take(self) -> PendingSamples:
        """This step's intervals, to resolve later; the timer starts afresh."""
        pending = PendingSamples(self._intervals)
        self._intervals = []
        return pending
