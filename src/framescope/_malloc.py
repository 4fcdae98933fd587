"""The C allocator's treatment of large freed buffers (``--malloc``).

glibc's malloc serves an allocation above its mmap threshold with a fresh ``mmap`` and unmaps it when it is
freed; the threshold starts at 128 KiB and rises, up to 32 MiB, to the size of the largest mapped chunk freed
so far. A PyTorch job on the CPU allocates and frees the same large buffers every step (batches, activations),
so whether those buffers are mapped afresh each step - every page faulted in and zeroed by the kernel again -
depends on the order in which the process happened to free them early on. On the 2-core development machine
that made processes of one job bimodal: resnet18 on ``synthetic:224x224``, batch 8, ran at 86-92 FPS in most
processes and 102-108 in a few, and 36 replayed cameras into mobilenet_v3_small spent 70-88 ms a batch in the
model in most processes and 51 in some, with the kernel taking 20 % of the CPU time against 6 %.

``retain`` (``mallopt``: no mmap for allocations, no trimming of the heap) keeps freed memory in the process
for reuse, as jemalloc and tcmalloc do and as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` would; the
same job then ran at 106-111 FPS in every process. The process keeps its peak memory instead of returning it
to the system. The setting is process-wide and, once made, lasts for the process: glibc cannot be returned to
its adaptive threshold.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from typing import Any

from framescope.config import MALLOC_MODES

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1
"""The largest value mallopt's int takes: a heap top this large is never handed back."""

_ENV_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")

_STATE = {"retained": False}
"""Whether this process already retains freed memory (made by an earlier run in it)."""


@functools.cache
def _glibc() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def allocator() -> str:
    """Which allocator serves ``malloc`` here, as far as the environment says: a preloaded jemalloc or
    tcmalloc, else glibc (or the platform's own)."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return f"{name} (LD_PRELOAD)"
    return "glibc" if _glibc() is not None else platform.system().lower() or "unknown"


def apply_malloc(mode: str) -> dict[str, Any]:
    """Apply ``--malloc MODE`` to this process; returns what the summary records: ``setting`` (asked),
    ``in_effect`` (``retain`` or ``default``), ``allocator``, the glibc environment knobs set, and a ``note``
    where the two differ."""
    if mode not in MALLOC_MODES:
        raise ValueError(f"{mode = } should be one of {', '.join(MALLOC_MODES)}.")
    name = allocator()
    knobs = {key: os.environ[key] for key in _ENV_KNOBS if key in os.environ}
    record: dict[str, Any] = {"setting": mode, "in_effect": mode, "allocator": name, "environment": knobs}
    if mode == "retain" and not _STATE["retained"]:
        libc = _glibc() if name == "glibc" else None
        if libc is None:
            record["in_effect"] = "default"
            record["note"] = f"--malloc retain not applied: it tunes glibc's malloc; this process uses {name}"
            return record
        if libc.mallopt(_M_MMAP_MAX, 0) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) != 1:
            record["in_effect"] = "default"
            record["note"] = "--malloc retain not applied: glibc's mallopt refused the settings"
            return record
        _STATE["retained"] = True
    elif mode == "default" and _STATE["retained"]:
        record["in_effect"] = "retain"
        record["note"] = (
            "malloc retains freed memory in this process (an earlier run in it asked for --malloc retain); "
            "glibc cannot go back to its adaptive threshold, so this run measured it retaining"
        )
    return record
