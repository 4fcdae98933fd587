"""Automatic mixed precision: float16 on CUDA, bfloat16 on the CPU, each device under its own autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def amp_dtype(device: torch.device) -> torch.dtype:
    """The AMP precision: float16 on CUDA, bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``device`` (which covers that device's ops only), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))
