"""``framescope.run``: one profiling run, from config to run directory.

Order matters for the user: everything that can be wrong with the input (devices, cores, output directory,
source, model) is checked before the run directory is created, and once the loop starts every finished batch
is on disk before the next begins.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from framescope._version import __version__
from framescope.config import RunConfig, parse_decode_size
from framescope.errors import DeviceError, FramescopeError, Terminated
from framescope.instrument import Clock, ProfilerWindow, StageTimer, monotonic, profiling_requested_by_env
from framescope.instrument import system as system_info
from framescope.instrument.cpu_load import CpuLoadMeter, load_warnings
from framescope.instrument.events import CUDA_EVENTS, EventTimer
from framescope.instrument.sampler import RunnableSampler
from framescope.models import build_model, input_spec, make_runner, parse_split_point, task_of
from framescope.pipeline import (
    Row,
    StepPlan,
    ThreadPlan,
    configure_threads,
    plan_stages,
    rebalance_async,
    restore_threads,
    run_async,
    run_sync,
)
from framescope.postprocess import make_postprocess, results_to_host
from framescope.preprocess import Batch, InputSpec, Preprocessor, resized_size
from framescope.records import (
    COLUMNS,
    CONFIG_FILE,
    PRODUCER_STAGES,
    STAGE_COLUMNS,
    SUMMARY_FILE,
    SYSTEM_FILE,
    RunResult,
    RunWriter,
    ensure_writable_dir,
    metrics_filename,
    summarize,
)
from framescope.sources import Source, SourceInfo, make_source

TRACE_FILE = "torch_trace.json"


@dataclass(slots=True)
class StartInfo:
    """What a run is about to do; handed to observers before the first step."""

    run_dir: Path
    csv_path: Path
    config: RunConfig
    system: dict[str, Any]
    source: SourceInfo
    model: dict[str, Any]
    threads: ThreadPlan
    timing_method: str
    expected_steps: int | None


class RunObserver:
    """Receives a run's progress; the CLI renders it, the Python API ignores it by default."""

    def on_start(self, info: StartInfo) -> None:
        """Called once, after set-up and before the first step."""

    def on_step(self, row: Row) -> None:
        """Called after each step's row is on disk."""

    def on_warning(self, message: str) -> None:
        """Called for anything that makes the numbers less trustworthy."""

    def on_finish(self, result: RunResult) -> None:
        """Called once the summary is written (also for interrupted and failed runs)."""


def resolve_devices(config: RunConfig) -> tuple[torch.device, torch.device, torch.device]:
    """(preprocessing, model, post-processing) devices; asking for CUDA without one is an error, never a
    fallback."""
    for wanted, flag in (
        (config.model.on_gpu, "--infer-on-gpu"),
        (config.preprocess.on_gpu, "--prep-on-gpu"),
        (config.postprocess.on_gpu, "--post-on-gpu"),
        (config.source.decode_on_gpu, "--decode-on-gpu"),
    ):
        if wanted and not torch.cuda.is_available():
            reason = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            )
            raise DeviceError(f"{flag} needs a CUDA GPU, but {reason}; drop {flag} to run on the CPU.")
    cuda = torch.device("cuda")
    cpu = torch.device("cpu")
    return (
        cuda if config.preprocess.on_gpu else cpu,
        cuda if config.model.on_gpu else cpu,
        cuda if config.postprocess.on_gpu else cpu,
    )


def batch_device(config: RunConfig) -> torch.device:
    """Where frames arrive: on the GPU when torchcodec decodes them there, on the host otherwise."""
    on_gpu = config.source.decode_on_gpu and config.source.decoder == "torchcodec"
    return torch.device("cuda" if on_gpu else "cpu")


def decode_size(config: RunConfig, spec: InputSpec, info: SourceInfo) -> tuple[int, int] | None:
    """The (width, height) frames are decoded to: ``--decode-size`` as given, or for ``auto`` the size the
    preprocessing's first resize would produce (never larger than the frame)."""
    size = parse_decode_size(config.source.decode_size)
    if size != "auto":
        return size if isinstance(size, tuple) else None
    if not info.width or not info.height:
        return None
    width, height = resized_size(config.preprocess.level, spec, info.width, info.height)
    return (width, height) if width < info.width and height < info.height else None


def deadline_ms(config: RunConfig, info: SourceInfo) -> float | None:
    """When a live frame's result is on time: ``--deadline-ms``, or the time to fill a batch plus one frame
    interval at the input's rate."""
    if config.deadline_ms is not None:
        return config.deadline_ms
    if not info.live or not info.fps:
        return None
    return (config.batch_size + 1) * 1000.0 / info.fps


def busy_elsewhere_warnings(timer: StageTimer, threads: ThreadPlan) -> list[str]:
    """Stages during which the process used clearly more cores than the stage's own threads can: other
    threads were burning CPU meanwhile, typically torch's OpenMP workers spinning after the model."""
    expected = {"read": threads.decode_threads, "h2d": 1, "d2h": 1}
    run_wall = sum(timer.wall_totals.values())
    warnings = []
    for stage, value in timer.parallelism().items():
        allowed = expected.get(stage, threads.torch_threads)
        if value > allowed + 0.5 and timer.wall_totals[stage] >= 0.05 * run_wall:
            warnings.append(
                f"during {stage} the process kept {value:.1f} cores busy though the stage runs on at most "
                f"{allowed} thread(s): other threads were burning CPU meanwhile (typically torch's OpenMP "
                "workers spinning after the model), which slows the stage; fewer --torch-threads may help."
            )
    return warnings


def model_input_device(config: RunConfig, model_device: torch.device) -> torch.device:
    """Where the model's input must be: with --split-point the first part runs on the CPU."""
    return torch.device("cpu") if config.model.split_point else model_device


def _expected_steps(config: RunConfig, info: SourceInfo) -> int | None:
    by_frames = math.ceil(info.frame_count / config.batch_size) if info.frame_count else None
    candidates = [n for n in (by_frames, config.max_steps) if n is not None]
    return min(candidates) if candidates else None


def _dummy_batch(config: RunConfig, source: Source) -> Batch:
    """A batch shaped like the ones the loop will see, for the untimed warm-up."""
    width, height = source.output_size or (source.info.width or 224, source.info.height or 224)
    return torch.zeros((config.batch_size, 3, height, width), dtype=torch.uint8, device=batch_device(config))


def _model_info(
    config: RunConfig, task: str, model: torch.nn.Module, spec: InputSpec, device: torch.device
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": config.model.name,
        "task": task,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "device": str(device),
        "input": dataclasses.asdict(spec),
    }
    if config.model.split_point:
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
            post=make_postprocess(task, runner.model) if inference else None,
            post_device=post_device,
            to_host=results_to_host,
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
        writer.write_text(CONFIG_FILE, config.to_yaml())
        writer.write_json(SYSTEM_FILE, system)
        writer.open_rows()

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
            model_info=_model_info(config, task, model, spec, model_device),
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


@dataclass
class _Session:
    """The loop phase of a run: everything is set up; rows and the summary go to ``writer``."""

    config: RunConfig
    source: Source
    plan: StepPlan
    writer: RunWriter
    watcher: RunObserver
    timer: StageTimer
    clock: Clock
    threads: ThreadPlan
    system: dict[str, Any]
    setup: dict[str, float]
    model_info: dict[str, Any]
    started_at: float
    uses_cuda: bool
    cpu_meter: CpuLoadMeter
    setup_warnings: list[str]
    """Warnings known before the first step (thread plan, CPU competition during set-up, ...)."""
    events: EventTimer | None = None
    """Async on a GPU: the CUDA-event timer of the model's side."""
    thread_notes: list[str] = field(default_factory=list)
    """Decisions about threads taken during the run (async rebalancing after warm-up)."""
    sampler: RunnableSampler = field(default_factory=lambda: RunnableSampler(1))

    def start(self) -> None:
        self.watcher.on_start(
            StartInfo(
                run_dir=self.writer.run_dir,
                csv_path=self.writer.csv_path,
                config=self.config,
                system=self.system,
                source=self.source.info,
                model=self.model_info,
                threads=self.threads,
                timing_method=self.timer.method,
                expected_steps=_expected_steps(self.config, self.source.info),
            )
        )
        for message in self.setup_warnings:
            self.watcher.on_warning(message)
        self.cpu_meter.restart()

    def loop(self) -> RunResult:
        config, writer = self.config, self.writer
        rows: list[Row] = []

        def on_row(row: Row) -> None:
            writer.write_row(row)
            rows.append(row)
            self.watcher.on_step(row)

        status, error = "complete", None
        profiler = ProfilerWindow(
            enabled=config.profile.enabled,
            trace_path=writer.run_dir / TRACE_FILE,
            wait=config.profile.wait,
            warmup=config.profile.warmup,
            active=config.profile.active,
            cuda=self.uses_cuda,
        )
        cores = len(self.threads.cores) if self.threads.cores else (os.cpu_count() or 1)
        self.sampler = RunnableSampler(cores)
        try:
            with profiler, self.sampler:
                common: dict[str, Any] = {
                    "batch_size": config.batch_size,
                    "timer": self.timer,
                    "clock": self.clock,
                    "max_steps": config.max_steps,
                    "warmup_steps": config.warmup_steps,
                    "profiler": profiler,
                    "on_row": on_row,
                }
                if config.pipeline == "async":
                    run_async(
                        self.source,
                        self.plan,
                        depth=config.prefetch,
                        events=self.events,
                        after_warmup=self._rebalance if config.torch_threads is None else None,
                        **common,
                    )
                else:
                    run_sync(self.source, self.plan, **common)
        except KeyboardInterrupt as exc:
            status = "interrupted"
            error = "stopped by SIGTERM" if isinstance(exc, Terminated) else "stopped by the user (Ctrl-C)"
            raise
        except torch.OutOfMemoryError:
            status = "failed"
            error = f"out of memory at batch size {config.batch_size}; lower --batch-size."
            raise FramescopeError(error) from None
        except Exception as exc:
            status = "failed"
            error = str(exc) if isinstance(exc, FramescopeError) else f"{type(exc).__name__}: {exc}"
            raise
        finally:
            result = self._finish(rows, status, error, profiler)
        return result

    def _rebalance(self, warmup_rows: list[Row]) -> None:
        """Async: after warm-up, give the model every core if the producer is mostly idle (see
        :func:`rebalance_async`); the decision and its measurement go into the run's record."""
        measured = warmup_rows[1:] or warmup_rows  # the first step pays first-read costs
        if not measured:
            return

        def per_batch(*columns: str) -> float:
            return float(np.median([sum(row[c] or 0.0 for c in columns) for row in measured])) / 1000.0

        producer_s = per_batch(*(STAGE_COLUMNS[s] for s in PRODUCER_STAGES))
        model_s = per_batch("total_step_latency_ms") - per_batch("queue_wait_ms")
        cores = len(self.threads.cores) if self.threads.cores else (os.cpu_count() or 1)
        threads, reason = rebalance_async(cores, self.threads.torch_threads, producer_s, model_s)
        if threads != self.threads.torch_threads:
            torch.set_num_threads(threads)
            self.threads.torch_threads = threads
        self.thread_notes.append(reason)

    def _finish(self, rows: list[Row], status: str, error: str | None, profiler: ProfilerWindow) -> RunResult:
        config = self.config
        load = self.cpu_meter.read()
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        summary: dict[str, Any] = {
            "framescope_version": __version__,
            "status": status,
            "error": error,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "run_time_s": time.time() - self.started_at,
            "model": self.model_info,
            "mode": config.model.mode,
            "pipeline": config.pipeline,
            "batch_size": config.batch_size,
            "timing_method": self.timer.method,
            "source": dataclasses.asdict(self.source.info),
            "frames_skipped": self.source.frames_skipped,
            "decode_size": list(self.source.output_size) if self.source.output_size else None,
            "threads": {
                "cores": self.threads.cores,
                "torch": self.threads.torch_threads,
                "decode": self.threads.decode_threads,
                "notes": self.thread_notes,
            },
            "setup": self.setup,
            "cpu": {"cores": load.cores, "ours": load.ours, "others": load.others, "steal": load.steal},
            "trace": profiler.written.name if profiler.written is not None else None,
        }
        summary.update(summarize(frame, config.pipeline, deadline_ms(config, self.source.info)))
        new_warnings = load_warnings(load, "during the run") + self.source.warnings
        if self.source.frames_skipped:
            new_warnings.append(
                f"{self.source.frames_skipped} undecodable packet(s) or file(s) were skipped in the input."
            )
        if config.profile.enabled and profiler.written is None:
            new_warnings.append(
                f"no torch.profiler trace: the window (wait {config.profile.wait}, warm-up "
                f"{config.profile.warmup}, active {config.profile.active}) needs more than the "
                f"{len(rows)} step(s) the run had."
            )
        parallelism = self.timer.parallelism()
        if parallelism:
            summary["cpu"]["stage_parallelism"] = {
                STAGE_COLUMNS.get(stage, stage): round(value, 2) for stage, value in parallelism.items()
            }
            new_warnings += busy_elsewhere_warnings(self.timer, self.threads)
        if self.sampler.summary() is not None:
            summary["cpu"].update(self.sampler.summary() or {})
            new_warnings += self.sampler.warnings()
        summary["warnings"] = self.setup_warnings + new_warnings
        self.writer.write_json(SUMMARY_FILE, summary)
        for message in new_warnings:
            self.watcher.on_warning(message)
        result = RunResult(
            run_dir=self.writer.run_dir,
            config=config.to_dict(),
            system=self.system,
            rows=frame,
            summary=summary,
            csv_path=self.writer.csv_path,
        )
        self.watcher.on_finish(result)
        return result
