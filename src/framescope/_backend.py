"""Assembling ``--backend onnxruntime``: the shape the model's input will have, the export (from the cache or
now) and the session, each timed as a part of the run's set-up, never as a step."""

from __future__ import annotations

import torch
from torch import nn

from framescope.config import RunConfig
from framescope.instrument import Clock
from framescope.models._onnx import OnnxRunner, cached_export
from framescope.preprocess import InputSpec, Preprocessor


def model_input_shape(config: RunConfig, spec: InputSpec, frame_size: tuple[int, int]) -> tuple[int, ...]:
    """(channels, height, width) of one preprocessed frame of ``frame_size`` (width, height): what the
    preprocessing makes of it, so the export sees exactly the model's input."""
    width, height = frame_size
    frame = torch.zeros((1, 3, height, width), dtype=torch.uint8)
    prepared = Preprocessor(config.preprocess.level, spec)(frame)
    assert isinstance(prepared, torch.Tensor)  # a tensor batch stays a tensor
    return tuple(prepared.shape[1:])


def build_onnx_runner(
    config: RunConfig,
    model: nn.Module,
    task: str,
    device: torch.device,
    *,
    input_shape: tuple[int, ...],
    threads: int,
    clock: Clock,
) -> tuple[OnnxRunner, dict[str, float]]:
    """The runner, and the seconds its export (or cache check) and its session took (``summary.setup``)."""
    t = clock()
    onnx_file = cached_export(
        model,
        config.model.name,
        task,
        weights=config.model.weights,
        seed=config.seed,
        input_shape=input_shape,
    )
    export_s = clock() - t
    t = clock()
    runner = OnnxRunner(model, task, onnx_file, device, threads=threads)
    return runner, {"onnx_export_s": export_s, "onnx_session_s": clock() - t}
