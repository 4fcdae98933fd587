"""Per-thread OpenMP limits.

torch.set_num_threads is process-wide, but OpenMP's thread count is a per-thread setting: a worker thread
that runs torch ops starts its own team of intra-op threads, on top of the model's. Limiting the worker's own
setting (through the OpenMP runtime torch loaded) keeps its preprocessing single-threaded without touching
the model's threads.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch


@cache
def _openmp_runtime() -> ctypes.CDLL | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted(
                {line.split()[-1] for line in maps if any(n in line for n in ("libgomp", "libiomp"))}
            )
    except OSError:
        return None
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def limit_this_thread(threads: int = 1) -> bool:
    """Make torch ops started from the calling thread use ``threads`` OpenMP threads. Returns whether the
    OpenMP runtime was found (torch built with another threading backend: no limit, no harm)."""
    runtime = _openmp_runtime()
    if runtime is None:
        return False
    torch.ones(65_536).add_(1)  # torch sets a thread's OpenMP count on its first parallel op; do that first
    runtime.omp_set_num_threads(threads)
    return True


def threads_of_this_thread() -> int | None:
    """The OpenMP thread count of the calling thread, where the runtime is known."""
    runtime = _openmp_runtime()
    return int(runtime.omp_get_max_threads()) if runtime is not None else None
