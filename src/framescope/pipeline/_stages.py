"""The stages of a step after reading, and the copies between devices that placing them implies."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from framescope.models import StepResult, move, to_host
from framescope.stages import Stage

CPU = torch.device("cpu")


@dataclass(slots=True)
class PlannedStage:
    """One stage of a step's plan: what runs, and on which device."""

    name: Stage
    """Which stage this is (its span name and column)."""
    run: Callable[[Any], Any]
    warm_up: Callable[[Any], Any] | None = None
    """A side-effect-free stand-in for warming up (retrain: no optimizer step); default ``run``."""
    device: torch.device = field(default_factory=lambda: CPU)
    """Where the stage's work runs (for a copy, the GPU side), which decides how it is timed."""

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


@dataclass(slots=True)
class StepPlan:
    """What one step does after reading, in order. The model stage returns a :class:`StepResult`; the
    stages after it get its output, and its loss goes into the row."""

    stages: list[PlannedStage] = field(default_factory=list)
    batch_device: torch.device = field(default_factory=lambda: CPU)
    """Where batches arrive: the GPU when frames are decoded there (torchcodec with NVDEC)."""

    def warm_up(self, batch: Any) -> None:
        """Run every stage once, untimed (first-call allocation, cuDNN autotuning, torch.compile)."""
        value = batch
        for stage in self.stages:
            value = (stage.warm_up or stage.run)(value)
            if isinstance(value, StepResult):
                value = value.output
            if value is None:
                return

    def split_at_model(self) -> tuple[list[PlannedStage], list[PlannedStage]]:
        """(stages before the model, the model and after): what a producer thread can run ahead."""
        index = next(i for i, stage in enumerate(self.stages) if stage.name == Stage.EXEC)
        return self.stages[:index], self.stages[index:]


def run_stages(
    stages: Iterable[PlannedStage], value: Any, timed: Callable[[PlannedStage], AbstractContextManager[Any]]
) -> tuple[Any, Any]:
    """Run ``stages`` in order on ``value``, each inside ``timed(stage)``. Returns the last output and the
    model stage's loss (None in inference, or when the model is not among ``stages``)."""
    loss = None
    for stage in stages:
        with timed(stage):
            value = stage.run(value)
        if isinstance(value, StepResult):
            loss, value = value.loss, value.output
    return value, loss


def copy_stage(
    source: torch.device, target: torch.device, run: Callable[[Any], Any] | None = None
) -> PlannedStage:
    """A copy from ``source`` to ``target`` device, named for its direction. A copy to the host is complete
    when the stage ends (:func:`~framescope.models.to_host`): the next stage reads it there."""
    if (source.type == "cpu") == (target.type == "cpu"):
        raise ValueError(f"a copy stage goes between the host and a device, not {source} -> {target}")
    name = Stage.D2H if target.type == "cpu" else Stage.H2D
    gpu_side = target if target.type != "cpu" else source
    if run is None:
        run = to_host if target.type == "cpu" else functools.partial(move, device=target)
    return PlannedStage(name, run, device=gpu_side)


def plan_stages(
    *,
    batch_device: torch.device | None = None,
    prep: Callable[[Any], Any],
    prep_device: torch.device,
    model: Callable[[Any], StepResult],
    model_warm_up: Callable[[Any], Any] | None,
    input_device: torch.device,
    output_device: torch.device,
    post: Callable[[Any], Any] | None = None,
    post_device: torch.device | None = None,
    results_back: Callable[[Any], Any] | None = None,
) -> StepPlan:
    """The stages for a placement: the batch arriving on ``batch_device`` (the host, unless frames were
    decoded on the GPU), preprocessing on ``prep_device``, the model taking input on ``input_device`` and
    leaving output on ``output_device`` (they differ with a split point), then the post-processing on
    ``post_device``; results end on the host. Every device change is its own copy stage."""
    stages: list[PlannedStage] = []
    where = batch_device or CPU
    prep_stage = PlannedStage(Stage.PREP, prep, device=prep_device)
    model_stage = PlannedStage(Stage.EXEC, model, model_warm_up, device=output_device)
    for target, stage in ((prep_device, prep_stage), (input_device, model_stage)):
        if target != where:
            stages.append(copy_stage(where, target))
        stages.append(stage)
        where = target
    where = output_device
    if post is not None:
        post_device = post_device or CPU
        if post_device != where:
            stages.append(copy_stage(where, post_device))
        stages.append(PlannedStage(Stage.POST, post, device=post_device))
        where = post_device
        if where.type != "cpu":
            stages.append(copy_stage(where, CPU, results_back))
    return StepPlan(stages, batch_device or CPU)
