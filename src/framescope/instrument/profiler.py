"""The torch.profiler window: a context manager with ``step()`` that costs nothing when disabled.

The window follows ``torch.profiler.schedule``: ``wait`` steps untraced, ``warmup`` steps traced and
discarded, ``active`` steps recorded; the trace is written as Chrome/Perfetto JSON when the window closes.
A trace that cannot be written (a full disk) is not a reason to stop the run: ``failure`` says what happened
and the run reports it as a warning.
"""

from __future__ import annotations

import contextlib
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
        self.failure: str | None = None
        """Why the trace could not be written, as a one-line warning (None when it was, or never tried)."""
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
        path = self.trace_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(path))
            complete = _is_complete_trace(path)
        except (OSError, RuntimeError) as exc:
            complete, reason = False, (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        else:
            reason = "torch did not finish writing it"
        if complete:
            self.written = path
            return
        self.written = None
        self.failure = (  # free space measured before the partial trace is removed
            f"no torch.profiler trace: cannot write {str(path)!r} ({reason}{_free_space(path.parent)}); the "
            "run went on without it; free space on that filesystem or pass --output-dir on one with room."
        )
        # kineto writes PATH.tmp and renames it; on failure it only logs, and leaves PATH.tmp behind with its
        # file still open, so the space comes back only if the file is emptied before it is unlinked
        for leftover in (path, path.with_name(path.name + ".tmp")):
            with contextlib.suppress(OSError):
                os.truncate(leftover, 0)
            with contextlib.suppress(OSError):
                leftover.unlink()

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


def _is_complete_trace(path: Path) -> bool:
    """Whether ``path`` holds a whole Chrome trace: a JSON document that ends where it should (a trace cut
    short by a full disk does not)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip()
    except OSError:
        return False
    return tail.endswith((b"}", b"]"))


def _free_space(directory: Path) -> str:
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):
        return ""
    return f"; {stat.f_bavail * stat.f_frsize // 1024} KiB free there"
