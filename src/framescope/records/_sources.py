"""Per-source figures of a run with several sources: ``summary.json["sources"]``.

The CSV holds one row per batch, not per frame, so what each source got is tallied from the steps as they
are recorded: each steady step's frames per source, their latencies (from when each frame was due to when
its batch's results were ready) and each source's drops. A killed run's summary, rebuilt from its rows, has
no ``sources`` block.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # reading run directories must not load torch
    from framescope.pipeline import StepTiming


KEPT_LATENCIES = 100_000
"""Per source, the frame latencies kept for its percentiles: every one up to this many, then a uniform sample
of this many (a day of a 30 FPS camera is 2.6 million frames; the p99 of 100 000 sampled is within a few
hundredths of a percentile rank of the exact one)."""


class LatencySample:
    """Frame latencies in bounded memory: all of them up to ``keep``, then a uniform random sample of
    ``keep`` (Vitter's algorithm R, seeded so a run's figures are reproducible from its frames). Kept as
    packed doubles, 8 bytes a frame (a list of floats takes 32): a 20-minute soak of four 30 FPS cameras
    grew by 8 MB with lists, most of it these samples filling up."""

    def __init__(self, keep: int = KEPT_LATENCIES, seed: int = 0) -> None:
        self.keep = keep
        self.seen = 0
        self.values = array("d")
        self._rng = np.random.default_rng(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.keep:
            self.values.append(value)
            return
        slot = int(self._rng.integers(self.seen))
        if slot < self.keep:
            self.values[slot] = value


TIMELINE_WINDOWS = 400
"""The most time windows per source in the summary's timeline: the window doubles (pairs merged) when a run
outlasts them, so a day-long run's timeline is as small as a minute's."""


class Timeline:
    """Per-source frame latency over time, in bounded memory: per window of ``window_s`` seconds (from the
    first steady batch's result), each source's frames, mean and largest latency; mean and max merge exactly
    when the window doubles."""

    def __init__(self, sources: int, window_s: float = 1.0, windows: int = TIMELINE_WINDOWS) -> None:
        self.window_s, self.limit = window_s, windows
        self.origin: float | None = None
        self.frames = [[0] * windows for _ in range(sources)]
        self.total = [[0.0] * windows for _ in range(sources)]
        self.largest: list[list[float | None]] = [[None] * windows for _ in range(sources)]
        self.used = 0

    def add(self, source: int, at_s: float, latency_ms: float) -> None:
        if self.origin is None:
            self.origin = at_s
        index = int(max(0.0, at_s - self.origin) / self.window_s)
        while index >= self.limit:
            self._double()
            index //= 2
        self.used = max(self.used, index + 1)
        self.frames[source][index] += 1
        self.total[source][index] += latency_ms
        largest = self.largest[source][index]
        self.largest[source][index] = latency_ms if largest is None else max(largest, latency_ms)

    def _double(self) -> None:
        half = self.limit // 2
        for frames, total, largest in zip(self.frames, self.total, self.largest, strict=True):
            for i in range(half):
                a, b = 2 * i, 2 * i + 1
                frames[i], total[i] = frames[a] + frames[b], total[a] + total[b]
                pair = [v for v in (largest[a], largest[b]) if v is not None]
                largest[i] = max(pair) if pair else None
            frames[half:] = [0] * (self.limit - half)
            total[half:] = [0.0] * (self.limit - half)
            largest[half:] = [None] * (self.limit - half)
        self.window_s *= 2
        self.used = (self.used + 1) // 2

    def as_dict(self) -> dict[str, Any]:
        n = self.used
        return {
            "window_s": self.window_s,
            "start_s": [round(i * self.window_s, 6) for i in range(n)],
            "per_source": [
                {
                    "source": index,
                    "frames": frames[:n],
                    "mean_ms": [t / f if f else None for t, f in zip(total[:n], frames[:n], strict=True)],
                    "max_ms": largest[:n],
                }
                for index, (frames, total, largest) in enumerate(
                    zip(self.frames, self.total, self.largest, strict=True)
                )
            ],
        }


@dataclass
class _Source:
    frames: int = 0
    dropped: int = 0
    on_time: int = 0
    latencies: LatencySample = field(default_factory=LatencySample)


class SourceTally:
    """Per-source frames, drops and latencies over the steady steps (warm-up and profiled ones left out,
    as in the rest of the summary). Counts are exact; percentiles come from :class:`LatencySample`."""

    def __init__(self, uris: list[str], deadline_ms: float | None = None) -> None:
        self.uris = uris
        self.deadline_ms = deadline_ms
        self._sources = [_Source() for _ in uris]
        self._seconds = 0.0
        self._overall = LatencySample(seed=len(uris))
        self.timeline = Timeline(len(uris))

    def add(self, timing: StepTiming) -> None:
        if timing.warmup or timing.profiled:
            return
        self._seconds += timing.total_s
        dues = timing.frames.dues_by_source or {}
        for source, times in dues.items():
            entry = self._sources[source]
            entry.frames += len(times)
            if timing.ready_s is not None:
                for due in times:
                    latency = (timing.ready_s - due) * 1000.0
                    entry.latencies.add(latency)
                    self.timeline.add(source, timing.ready_s, latency)
                    self._overall.add(latency)
                    if self.deadline_ms is not None and latency <= self.deadline_ms:
                        entry.on_time += 1
        if timing.live is not None and timing.live.dropped_by_source is not None:
            for entry, dropped in zip(self._sources, timing.live.dropped_by_source, strict=True):
                entry.dropped += dropped

    def summary(self) -> dict[str, Any]:
        """``{"per_source": [...], "overall": {...}}``: per source ``frames``, ``dropped``,
        ``latency_p50_ms``, ``latency_p99_ms``, ``on_time_frames``, ``on_time_fps``; overall the same over
        every frame; ``timeline``: per source, frames and mean and largest latency per time window."""
        deadline = self.deadline_ms
        per_source = [
            {"source": i, "uri": uri, **_figures(s, self._seconds, deadline)}
            for i, (uri, s) in enumerate(zip(self.uris, self._sources, strict=True))
        ]
        overall = _Source(
            frames=sum(s.frames for s in self._sources),
            dropped=sum(s.dropped for s in self._sources),
            on_time=sum(s.on_time for s in self._sources),
            latencies=self._overall,
        )
        return {
            "count": len(self.uris),
            "deadline_ms": deadline,
            "per_source": per_source,
            "overall": _figures(overall, self._seconds, deadline),
            "timeline": self.timeline.as_dict(),
        }


def _figures(source: _Source, seconds: float, deadline_ms: float | None) -> dict[str, Any]:
    values = np.asarray(source.latencies.values, dtype=float)
    p50, p99 = (float(v) for v in np.percentile(values, (50, 99))) if values.size else (None, None)
    on_time = source.on_time if deadline_ms is not None else None
    return {
        "frames": source.frames,
        "dropped": source.dropped,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "on_time_frames": on_time,
        "on_time_fps": on_time / seconds if on_time is not None and seconds > 0 else None,
    }
