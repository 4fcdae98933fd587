"""The torch.profiler window: a context manager with ``step()`` that costs nothing when disabled.

The window follows ``torch.profiler.schedule``: ``wait`` steps untraced, ``warmup`` steps traced and
discarded, ``active`` steps recorded; the trace is written as Chrome/Perfetto JSON when the window closes.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import torch

ENV_SWITCH = "ENABLE_PROFILING"


def profiling_requested_by_env() -> bool:
    """True when ``ENABLE_PROFILING`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("1", "true", "yes", "on")


class ProfilerWindow:
    """Records steps ``[wait + warmup, wait + warmup + active)`` into ``trace_path``.

    Use as ``with ProfilerWindow(...) as window:`` and call ``window.step()`` after every step.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        trace_path: Path,
        wait: int = 1,
        warmup: int = 1,
        active: int = 3,
        cuda: bool = False,
    ) -> None:
        self.enabled = enabled
        self.trace_path = trace_path
        self.wait, self.warmup, self.active = wait, warmup, active
        self.cuda = cuda
        self.written: Path | None = None
        self._profiler: torch.profiler.profile | None = None
        self._steps = 0

    def traced(self, step: int) -> bool:
        """Whether ``step`` (0-based) runs under the profiler (its warm-up or active phase)."""
        return self.enabled and self.wait <= step < self.wait + self.warmup + self.active

    def __enter__(self) -> ProfilerWindow:
        if not self.enabled:
            return self
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(
                wait=self.wait, warmup=self.warmup, active=self.active, repeat=1
            ),
            on_trace_ready=self._write,
            record_shapes=True,
            profile_memory=False,
            with_stack=False,
        )
        self._profiler.__enter__()
        return self

    def step(self) -> None:
        if self._profiler is not None:
            self._profiler.step()
            self._steps += 1

    def _write(self, prof: torch.profiler.profile) -> None:
        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self.trace_path))
        self.written = self.trace_path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._profiler is None:
            return
        profiler, self._profiler = self._profiler, None
        # A run shorter than the window still gets a trace of what was recorded: stopping the profiler
        # while active flushes the partial window through on_trace_ready.
        profiler.__exit__(exc_type, exc, tb)
