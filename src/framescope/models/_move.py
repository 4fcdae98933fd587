"""Moving nested model inputs and outputs between devices.

A copy from the GPU to the host that the host then reads must be complete before it is read: a non-blocking
device-to-host copy returns at once, and reading its destination then reads whatever the pinned buffer held
before. :func:`to_host` issues every copy of a nested value without blocking (so they overlap each other),
then waits once, on an event recorded after the last of them. Copies to a device may stay non-blocking: the
device's stream orders them before any kernel that reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

CPU = torch.device("cpu")


def move(value: Any, device: torch.device, *, non_blocking: bool = False) -> Any:
    """``value`` (tensors, lists, tuples, dicts of them, or anything with ``.to(device, non_blocking=...)``)
    on ``device``; containers keep their type, anything else is returned as it is. A copy to the host is
    never left in flight: use :func:`to_host` for host copies that should overlap."""
    if device.type == "cpu":
        non_blocking = False
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, list | tuple):
        return type(value)(move(v, device, non_blocking=non_blocking) for v in value)
    if isinstance(value, dict):
        return type(value)((k, move(v, device, non_blocking=non_blocking)) for k, v in value.items())
    if hasattr(value, "to"):
        return value.to(device, non_blocking=non_blocking)
    return value


def on_device(tensor: torch.Tensor) -> bool:
    """Whether a copy of ``tensor`` to the host runs on a device stream (and so can be left in flight)."""
    return tensor.is_cuda


def _wait_for_copies() -> None:
    """Block the host until the copies queued on the current stream are done: an event, not a stream
    synchronisation, so only this stream's work up to here is waited for."""
    done = torch.cuda.Event()
    done.record()
    done.synchronize()


def to_host(value: Any, *, wait: Callable[[], None] | None = None) -> Any:
    """``value`` copied to host memory, complete and safe to read: every device tensor is copied without
    blocking (into pinned memory, so the copies overlap), then the host waits once for all of them."""
    issued = False

    def copy(item: Any) -> Any:
        nonlocal issued
        if isinstance(item, torch.Tensor):
            if not on_device(item):
                return item
            issued = True
            return item.to(CPU, non_blocking=True)
        if isinstance(item, list | tuple):
            return type(item)(copy(v) for v in item)
        if isinstance(item, dict):
            return type(item)((k, copy(v)) for k, v in item.items())
        if hasattr(item, "map_tensors"):
            return item.map_tensors(copy)
        return item

    moved = copy(value)
    if issued:
        (wait or _wait_for_copies)()
    return moved
