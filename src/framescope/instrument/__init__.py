"""Measurement: the clock, spans (NVTX + record_function + timing), the torch.profiler window, system info."""

from framescope.instrument.clock import Clock, FakeClock, monotonic
from framescope.instrument.profiler import ProfilerWindow, profiling_requested_by_env
from framescope.instrument.spans import CUDA_SYNC, HOST_WALL, StageTimer, nvtx_range

__all__ = [
    "CUDA_SYNC",
    "HOST_WALL",
    "Clock",
    "FakeClock",
    "ProfilerWindow",
    "StageTimer",
    "monotonic",
    "nvtx_range",
    "profiling_requested_by_env",
]
