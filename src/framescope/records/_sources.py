"""Per-source figures of a run with several sources: ``summary.json["sources"]``.

The CSV holds one row per batch, not per frame, so what each source got is tallied from the steps as they
are recorded: each steady step's frames per source, their latencies (from when each frame was due to when
its batch's results were ready) and each source's drops. A killed run's summary, rebuilt from its rows, has
no ``sources`` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # reading run directories must not load torch
    from framescope.pipeline import StepTiming


@dataclass
class _Source:
    frames: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class SourceTally:
    """Per-source frames, drops and latencies over the steady steps (warm-up and profiled ones left out,
    as in the rest of the summary)."""

    def __init__(self, uris: list[str]) -> None:
        self.uris = uris
        self._sources = [_Source() for _ in uris]
        self._seconds = 0.0

    def add(self, timing: StepTiming) -> None:
        if timing.warmup or timing.profiled:
            return
        self._seconds += timing.total_s
        dues = timing.frames.dues_by_source or {}
        for source, times in dues.items():
            entry = self._sources[source]
            entry.frames += len(times)
            if timing.ready_s is not None:
                entry.latencies_ms += [(timing.ready_s - due) * 1000.0 for due in times]
        if timing.live is not None and timing.live.dropped_by_source is not None:
            for entry, dropped in zip(self._sources, timing.live.dropped_by_source, strict=True):
                entry.dropped += dropped

    def summary(self, deadline_ms: float | None) -> dict[str, Any]:
        """``{"per_source": [...], "overall": {...}}``: per source ``frames``, ``dropped``,
        ``latency_p50_ms``, ``latency_p99_ms``, ``on_time_fps``; overall the same over every frame."""
        per_source = [
            {
                "source": i,
                "uri": uri,
                **_figures(s.frames, s.dropped, s.latencies_ms, self._seconds, deadline_ms),
            }
            for i, (uri, s) in enumerate(zip(self.uris, self._sources, strict=True))
        ]
        overall = _figures(
            sum(s.frames for s in self._sources),
            sum(s.dropped for s in self._sources),
            [v for s in self._sources for v in s.latencies_ms],
            self._seconds,
            deadline_ms,
        )
        return {
            "count": len(self.uris),
            "deadline_ms": deadline_ms,
            "per_source": per_source,
            "overall": overall,
        }


def _figures(
    frames: int, dropped: int, latencies_ms: list[float], seconds: float, deadline_ms: float | None
) -> dict[str, Any]:
    values = np.asarray(latencies_ms, dtype=float)
    p50, p99 = (float(v) for v in np.percentile(values, (50, 99))) if values.size else (None, None)
    on_time = int((values <= deadline_ms).sum()) if deadline_ms is not None else None
    return {
        "frames": frames,
        "dropped": dropped,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "on_time_frames": on_time,
        "on_time_fps": on_time / seconds if on_time is not None and seconds > 0 else None,
    }
