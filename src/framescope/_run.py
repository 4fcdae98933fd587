"""``framescope.run``: one profiling run, from config to run directory.

This module only assembles: it checks what can be wrong with the input (devices, cores, output directory,
source, model) before the run directory exists, builds the parts (timers, source, model, the stage plan),
warms them up, opens the recorder and hands everything to the loop phase (:mod:`framescope._session`), where
every finished batch is on disk before the next begins.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from framescope._backend import build_onnx_runner, model_input_shape
from framescope._malloc import apply_malloc
from framescope._memory import batch_memory, check_batch_memory, host_out_of_memory
from framescope._observer import RunObserver
from framescope._placement import batch_device, decode_size, model_input_device, resolve_devices
from framescope._session import LoopPhase
from framescope.config import RunConfig
from framescope.errors import ConfigError, OutOfMemory
from framescope.instrument import Clock, monotonic, profiling_requested_by_env
from framescope.instrument.cpu_load import CpuLoadMeter
from framescope.instrument.memory import PeakMemory
from framescope.models import (
    OnnxRunner,
    Runner,
    SplitModel,
    build_model,
    input_spec,
    make_runner,
    parse_split_point,
    task_of,
)
from framescope.pipeline import StepPlan, ThreadPlan, Timers, configure_threads, plan_stages, restore_threads
from framescope.postprocess import make_postprocess, results_to_host
from framescope.preprocess import Batch, InputSpec, Preprocessor, resized_size
from framescope.records import RunResult, ensure_writable_dir
from framescope.sources import LiveSource, ManySources, Source, make_source


@dataclass
class Parts:
    """A run's parts, built, checked and warmed up: what the loop phase needs."""

    source: Source
    plan: StepPlan
    timers: Timers
    threads: ThreadPlan
    model: dict[str, Any]
    """The model as recorded in the summary: name, task, parameters, device, input, split."""
    setup: dict[str, float]
    """Seconds each part of the set-up took."""
    setup_cpu: dict[str, Any]
    """Who used the bound cores during the set-up (as ``summary.cpu`` for the run)."""
    uses_cuda: bool


def _frame_size(source: Source) -> tuple[int, int]:
    """(width, height) of the frames the loop will see."""
    return source.output_size or (source.info.width or 224, source.info.height or 224)


def _dummy_batch(config: RunConfig, source: Source) -> Batch:
    """A batch shaped like the ones the loop will see, for the untimed warm-up: never more frames than a
    finite input has."""
    width, height = _frame_size(source)
    frames = min(config.largest_batch, source.info.frame_count or config.largest_batch)
    return torch.zeros((frames, 3, height, width), dtype=torch.uint8, device=batch_device(config))


def _check_memory(config: RunConfig, source: Source, spec: InputSpec) -> None:
    """Refuse a batch size whose frames cannot fit in host memory, before allocating any of them."""
    width, height = _frame_size(source)
    model_input = (
        (spec.size[1], spec.size[0])
        if spec.size is not None and config.preprocess.level == "simple"
        else resized_size(config.preprocess.level, spec, width, height)
    )
    need = batch_memory(
        config,
        frame_size=(width, height),
        model_input=model_input,
        frame_count=None if source.info.live else source.info.frame_count,
        live=source.info.live,
    )
    check_batch_memory(need, config)


def _model_info(
    config: RunConfig,
    task: str,
    model: torch.nn.Module,
    spec: InputSpec,
    device: torch.device,
    *,
    split: bool,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": config.model.name,
        "task": task,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "device": str(device),
        "input": dataclasses.asdict(spec),
    }
    if split and config.model.split_point:  # only a split that really runs is recorded
        info["split"] = {
            "before": parse_split_point(config.model.split_point)[1],
            "first_part": "cpu",
            "second_part": str(device),
        }
    return info


def _warm_up(config: RunConfig, plan: StepPlan, source: Source) -> None:
    """One untimed pass through every stage (first-call allocation, cuDNN autotuning, torch.compile); a batch
    that does not fit is an error that says so."""
    try:
        plan.warm_up(_dummy_batch(config, source))
    except torch.OutOfMemoryError:
        raise OutOfMemory(
            f"out of memory running {config.model.name} at batch size {config.batch_size}; lower "
            "--batch-size."
        ) from None
    except RuntimeError as exc:
        if not host_out_of_memory(exc):
            raise
        raise OutOfMemory(
            f"out of host memory running {config.model.name} at batch size {config.batch_size} "
            f"({str(exc).splitlines()[0]}); lower --batch-size."
        ) from None


def assemble(config: RunConfig, threads: ThreadPlan, clock: Clock) -> Parts:
    """Check the input and build every part of the run, before its directory exists."""
    prep_device, model_device, post_device = resolve_devices(config)
    ensure_writable_dir(Path(config.output_dir))
    cpu_meter = CpuLoadMeter(threads.cores, clock)
    task = task_of(config.model.name)
    uses_cuda = "cuda" in (prep_device.type, model_device.type, post_device.type, batch_device(config).type)
    timers = Timers.for_run(clock, asynchronous=config.pipeline == "async", cuda=uses_cuda)
    setup: dict[str, float] = {}
    t = clock()
    source = make_source(
        config.source,
        clock=clock,
        threads=threads.decode_threads,
        seed=config.seed,
        batch_size=config.batch_size,
        span=timers.decode_span(decode_on_gpu=batch_device(config).type == "cuda"),
    )
    if config.batching == "dynamic" and not isinstance(source, ManySources):
        if not isinstance(source, LiveSource):
            raise ConfigError(
                f"--batching dynamic batches frames as they arrive, but {config.source.inputs[0]!r} is read "
                "as fast as it decodes; pass --source-fps N to replay it as a camera, or drop --batching "
                "dynamic."
            )
        source = ManySources([source], clock=clock)  # one source, batched as they arrive
    source.open()
    setup["source_open_s"] = clock() - t
    try:
        t = clock()
        model = build_model(config.model.name, config.model.weights, seed=config.seed)
        spec = input_spec(config.model.name, model)
        source.set_output_size(decode_size(config, spec, source.info))
        _check_memory(config, source, spec)
        runner: Runner | OnnxRunner
        if config.model.backend == "onnxruntime":
            runner, onnx_setup = build_onnx_runner(
                config,
                model,
                task,
                model_device,
                input_shape=model_input_shape(config, spec, _frame_size(source)),
                threads=threads.torch_threads,
                clock=clock,
            )
            setup.update(onnx_setup)
        else:
            runner = make_runner(
                model,
                task,
                config.model,
                model_device,
                seed=config.seed,
                span=timers.device_span(on_gpu=model_device.type == "cuda"),
            )
        inference = config.model.mode == "inference"
        plan = plan_stages(
            batch_device=batch_device(config),
            prep=Preprocessor(config.preprocess.level, spec),
            prep_device=prep_device,
            model=runner,
            model_warm_up=runner.warm_up,
            input_device=model_input_device(config, model_device),
            output_device=model_device,
            post=make_postprocess(task, runner.model, amp=config.model.amp) if inference else None,
            post_device=post_device,
            results_back=functools.partial(results_to_host, wait=False),
        )
        setup["model_build_s"] = (
            clock() - t - setup.get("onnx_export_s", 0.0) - setup.get("onnx_session_s", 0.0)
        )
        t = clock()
        _warm_up(config, plan, source)
        timers.discard_warmup()
        setup["warmup_s"] = clock() - t
        setup_cpu = cpu_meter.read().as_dict()
    except BaseException:
        source.close()
        raise
    model_info = _model_info(
        config, task, model, spec, model_device, split=isinstance(runner.model, SplitModel)
    )
    model_info["backend"] = config.model.backend
    if isinstance(runner, OnnxRunner):
        model_info["onnxruntime"] = runner.info()
    return Parts(source, plan, timers, threads, model_info, setup, setup_cpu, uses_cuda)


def run(config: RunConfig, *, observer: RunObserver | None = None, clock: Clock = monotonic) -> RunResult:
    """Profile ``config``'s model on ``config``'s input and return the run, also written to its directory.

    Raises :class:`~framescope.errors.FramescopeError` for problems with the input; rows measured before a
    failure stay on disk and the summary records the failure.
    """
    started_at = time.time()
    if profiling_requested_by_env() and not config.profile.enabled:
        config = config.replace(torch_profile=True)
    if config.several_models:  # --model-name a,b: every model on each frame
        from framescope._multi import run_several

        return run_several(config, observer=observer, clock=clock)
    malloc = apply_malloc(config.malloc)  # before the model and the frames take their memory
    resolve_devices(config)  # asking for CUDA without one is an error before anything is bound
    threads = configure_threads(
        config.cores,
        torch_threads=config.torch_threads,
        decode_threads=config.source.decode_threads,
        pipeline=config.pipeline,
    )
    memory = PeakMemory()
    memory.start()  # the model, its warm-up and the loop: what this configuration needs at its peak
    try:
        parts = assemble(config, threads, clock)
        try:
            return LoopPhase(
                config, parts, observer or RunObserver(), clock, started_at, memory=memory, malloc=malloc
            ).run()
        finally:
            parts.source.close()
    finally:
        restore_threads(threads)
