"""The memory a run took at its peak: the host's resident set and, on CUDA, the allocator's peak.

Cheap by design, nothing sampled: on Linux the kernel keeps a high-water mark of the resident set (``VmHWM``
in ``/proc/self/status``), which writing ``5`` to ``/proc/self/clear_refs`` resets to the current size; CUDA's
caching allocator keeps ``max_memory_allocated``, which ``reset_peak_memory_stats`` resets. Both are reset
when a run starts, so several runs in one process (a sweep, a tuning) each get their own peak. Where a peak
cannot be measured (another OS, a kernel that refuses the reset, no CUDA), it is None rather than a number
that would mean something else (a process-lifetime peak).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MIB = 2**20
PROC = Path("/proc/self")


def _host_high_water_kb(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """``meter = PeakMemory(); meter.start(); ...; meter.read()``: the peaks since :meth:`start`."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self.host_reset = False
        self.cuda_reset = False

    def start(self) -> None:
        try:
            (self.proc / "clear_refs").write_text("5")
            self.host_reset = _host_high_water_kb(self.proc) is not None
        except OSError:
            self.host_reset = False
        # Peaks only exist once CUDA is initialised; a first initialisation starts them at zero anyway.
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
            self.cuda_reset = True

    def read(self, *, cuda: bool) -> dict[str, Any]:
        """``summary.memory``: ``host_peak_mb`` (peak resident set since the start, MiB) and
        ``device_peak_mb`` (CUDA's peak allocated memory, MiB; None when the run used no GPU)."""
        kb = _host_high_water_kb(self.proc) if self.host_reset else None
        device = None
        if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
            device = torch.cuda.max_memory_allocated() / MIB
        return {
            "host_peak_mb": kb / 1024 if kb is not None else None,
            "device_peak_mb": device,
            "host_method": "VmHWM after clear_refs" if kb is not None else None,
            "device_method": "torch.cuda.max_memory_allocated" if device is not None else None,
        }
