"""Moving nested model inputs and outputs between devices."""

from __future__ import annotations

from typing import Any

import torch


def move(value: Any, device: torch.device, *, non_blocking: bool = False) -> Any:
    """``value`` (tensors, lists, tuples, dicts of them, or anything with ``.to(device)``) on ``device``;
    containers keep their type, anything else is returned as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, list | tuple):
        return type(value)(move(v, device, non_blocking=non_blocking) for v in value)
    if isinstance(value, dict):
        return type(value)((k, move(v, device, non_blocking=non_blocking)) for k, v in value.items())
    if hasattr(value, "to"):
        return value.to(device)
    return value
