"""``framescope.run``: one profiling run, from config to run directory.

Order matters for the user: everything that can be wrong with the input (devices, cores, output directory,
source, model) is checked before the run directory is created, and once the loop starts every finished batch
is on disk before the next begins.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import torch

from framescope._memory import batch_memory, check_batch_memory, host_out_of_memory
from framescope._observer import RunObserver
from framescope._placement import batch_device, decode_size, model_input_device, resolve_devices
from framescope._session import _Session
from framescope.config import RunConfig
from framescope.errors import FramescopeError, OutputError
from framescope.instrument import Clock, StageTimer, monotonic, profiling_requested_by_env
from framescope.instrument import system as system_info
from framescope.instrument.cpu_load import CpuLoadMeter, load_warnings
from framescope.instrument.events import CUDA_EVENTS, EventTimer
from framescope.models import (
    SplitModel,
    build_model,
    input_spec,
    make_runner,
    parse_split_point,
    task_of,
)
from framescope.pipeline import (
    ThreadPlan,
    configure_threads,
    plan_stages,
    restore_threads,
)
from framescope.postprocess import make_postprocess, results_to_host
from framescope.preprocess import Batch, InputSpec, Preprocessor, resized_size
from framescope.records import (
    CONFIG_FILE,
    SYSTEM_FILE,
    RunResult,
    RunWriter,
    ensure_writable_dir,
    metrics_filename,
)
from framescope.sources import Source, make_source


def _frame_size(source: Source) -> tuple[int, int]:
    """(width, height) of the frames the loop will see."""
    return source.output_size or (source.info.width or 224, source.info.height or 224)


def _dummy_batch(config: RunConfig, source: Source) -> Batch:
    """A batch shaped like the ones the loop will see, for the untimed warm-up: never more frames than a
    finite input has."""
    width, height = _frame_size(source)
    frames = min(config.batch_size, source.info.frame_count or config.batch_size)
    return torch.zeros((frames, 3, height, width), dtype=torch.uint8, device=batch_device(config))


def discard_warmup_samples(timer: StageTimer, events: EventTimer | None) -> None:
    """The untimed warm-up runs code that opens spans of its own (a split model's transfer): forget what they
    recorded, or the first step's row would include the warm-up's transfer."""
    timer.reset()
    if events is not None:
        events.take()


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


def run(config: RunConfig, *, observer: RunObserver | None = None, clock: Clock = monotonic) -> RunResult:
    """Profile ``config``'s model on ``config``'s input and return the run, also written to its directory.

    Raises :class:`~framescope.errors.FramescopeError` for problems with the input; rows measured before a
    failure stay on disk and the summary records the failure.
    """
    watcher = observer or RunObserver()
    started_at = time.time()
    if profiling_requested_by_env() and not config.profile.enabled:
        config = config.replace(torch_profile=True)
    prep_device, model_device, post_device = resolve_devices(config)
    threads = configure_threads(
        config.cores,
        torch_threads=config.torch_threads,
        decode_threads=config.source.decode_threads,
        pipeline=config.pipeline,
    )
    try:
        return _run_bound(
            config,
            watcher=watcher,
            clock=clock,
            threads=threads,
            prep_device=prep_device,
            model_device=model_device,
            post_device=post_device,
            started_at=started_at,
        )
    finally:
        restore_threads(threads)


def _run_bound(
    config: RunConfig,
    *,
    watcher: RunObserver,
    clock: Clock,
    threads: ThreadPlan,
    prep_device: torch.device,
    model_device: torch.device,
    post_device: torch.device,
    started_at: float,
) -> RunResult:
    ensure_writable_dir(Path(config.output_dir))
    cpu_meter = CpuLoadMeter(threads.cores, clock)
    task = task_of(config.model.name)
    warnings = list(threads.warnings)
    if config.model.mode == "retrain" and config.model.compile and model_device.type == "cpu":
        warnings.append("torch.compile of a training step on the CPU takes minutes to compile.")

    setup: dict[str, float] = {}
    t = clock()
    source = make_source(
        config.source,
        clock=clock,
        threads=threads.decode_threads,
        seed=config.seed,
        batch_size=config.batch_size,
    )
    source.open()
    setup["source_open_s"] = clock() - t
    writer: RunWriter | None = None
    try:
        uses_cuda = "cuda" in (
            prep_device.type,
            model_device.type,
            post_device.type,
            batch_device(config).type,
        )
        asynchronous = config.pipeline == "async"
        # sync: stages bracketed by device synchronisation (cuda-sync); async: host stages plain, device
        # stages timed by CUDA events (cuda-events), so nothing waits for the device per step
        timer = StageTimer(
            clock,
            sync=torch.cuda.synchronize if uses_cuda and not asynchronous else None,
            # per-stage CPU use means something only while one stage runs at a time
            cpu_clock=None if asynchronous else time.process_time,
        )
        events = EventTimer() if uses_cuda and asynchronous else None
        if events is not None:
            timer.method = CUDA_EVENTS
        t = clock()
        model = build_model(config.model.name, config.model.weights, seed=config.seed)
        spec = input_spec(config.model.name, model)
        source.set_output_size(decode_size(config, spec, source.info))
        _check_memory(config, source, spec)
        split_span = events.span if events is not None and model_device.type == "cuda" else timer.span
        runner = make_runner(model, task, config.model, model_device, seed=config.seed, span=split_span)
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
        setup["model_build_s"] = clock() - t
        t = clock()
        try:
            plan.warm_up(_dummy_batch(config, source))
        except torch.OutOfMemoryError:
            raise FramescopeError(
                f"out of memory running {config.model.name} at batch size {config.batch_size}; "
                "lower --batch-size."
            ) from None
        except RuntimeError as exc:
            if not host_out_of_memory(exc):
                raise
            raise FramescopeError(
                f"out of host memory running {config.model.name} at batch size {config.batch_size} "
                f"({str(exc).splitlines()[0]}); lower --batch-size."
            ) from None
        discard_warmup_samples(timer, events)
        setup["warmup_s"] = clock() - t
        warnings.extend(load_warnings(cpu_meter.read(), "during set-up"))

        pid = os.getpid()
        run_name = config.run_name or f"{config.model.name}_{time.strftime('%Y%m%d-%H%M%S')}_P{pid}"
        writer = RunWriter.create(
            Path(config.output_dir),
            run_name,
            metrics_filename(config.model.name, pid),
            unique=config.run_name is None,
        )
        system = system_info.collect()
        system["threads"] = {
            "cores": threads.cores,
            "bound": threads.bound,
            "torch_threads": threads.torch_threads,
            "decode_threads": threads.decode_threads,
        }
        try:
            writer.write_text(CONFIG_FILE, config.to_yaml())
            writer.write_json(SYSTEM_FILE, system)
            writer.open_rows()
        except OutputError as exc:  # e.g. a full disk: nothing measured yet, so leave no run directory
            raise writer.abandon(exc) from None

        session = _Session(
            config=config,
            source=source,
            plan=plan,
            writer=writer,
            watcher=watcher,
            timer=timer,
            clock=clock,
            threads=threads,
            system=system,
            setup=setup,
            model_info=_model_info(
                config, task, model, spec, model_device, split=isinstance(runner.model, SplitModel)
            ),
            started_at=started_at,
            uses_cuda=uses_cuda,
            cpu_meter=cpu_meter,
            setup_warnings=warnings,
            events=events,
        )
        session.start()
        return session.loop()
    finally:
        source.close()
        if writer is not None:
            writer.close()
