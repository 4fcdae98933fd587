"""Several models per frame (``--model-name a,b,c``): assembly and the run, as :mod:`framescope._run` and
:mod:`framescope._session` are for one model.

Frames are read and decoded once per batch, in the loop's thread. Each model gets its own stage plan (copies,
preprocessing, the model, post-processing) and its own stage timer; two models that need the same transform
(the same input spec, level and device) share one preprocessing per batch. The strategy
(:mod:`framescope.pipeline._multi`, :mod:`framescope._multi_proc`) decides how the models' plans run side by
side; the recorder (:mod:`framescope.records._multi`) writes one CSV per model, ``frames.csv`` and a summary
with each model's figures, including its interference: its step time alongside the others over its step time
alone, both measured in this invocation (each model first runs the first ``--solo-steps`` batches alone, under
the same strategy and thread plan).

The thread plan: a strategy that runs the models one at a time (serial, asyncio, streams) gives each model
every bound core, as a single run would; one that runs them at once (threads, asyncio-threads, processes)
divides the bound cores among them, at least one thread each (``--torch-threads N`` sets N per model). The
plan is recorded in ``summary.threads.multi``; whether threads waited for a CPU is measured, as for any run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from framescope._backend import build_onnx_runner, model_input_shape
from framescope._malloc import apply_malloc
from framescope._memory import host_out_of_memory
from framescope._multi_proc import ModelRunError, ProcessStrategy, WorkerSpec, peak_rss_mb, split_cores
from framescope._observer import RunObserver, StartInfo
from framescope._placement import batch_device, decode_size, resolve_devices
from framescope._secrets import redact_value
from framescope._session import Outcome, profiler_window
from framescope._version import __version__
from framescope.config import ModelConfig, RunConfig
from framescope.errors import ConfigError, FramescopeError, OutOfMemory, SourceError
from framescope.instrument import Clock, ProfilerWindow, StageTimer, monotonic
from framescope.instrument import system as system_info
from framescope.instrument.cpu_load import CpuLoadMeter
from framescope.instrument.memory import PeakMemory
from framescope.instrument.sampler import CpuWaitSampler
from framescope.models import build_model, input_spec, make_runner, task_of
from framescope.pipeline import ThreadPlan, configure_threads, plan_stages, restore_threads
from framescope.pipeline._multi import (
    CONCURRENT,
    STRATEGIES,
    AsyncioStrategy,
    ModelFailed,
    ModelTiming,
    ModelWork,
    MultiLoop,
    MultiStepTiming,
    SerialStrategy,
    SharedPrep,
    Strategy,
    StreamStrategy,
    ThreadStrategy,
    run_models,
)
from framescope.postprocess import make_postprocess, results_to_host
from framescope.preprocess import InputSpec, Preprocessor
from framescope.records import COLUMNS, RunResult
from framescope.records._multi import MultiRecorder
from framescope.sources import Source, make_source
from framescope.stages import Stage


def single_config(config: RunConfig, model: ModelConfig) -> RunConfig:
    """The run of ``model`` alone: what its devices, decode size and plan are worked out from."""
    return dataclasses.replace(config, model=model, models=None, multi_model="serial")


@dataclass
class Built:
    work: ModelWork
    info: dict[str, Any]
    """The model as the summary records it: name, task, parameters, device, input."""
    spec: InputSpec


def _info(
    model_config: ModelConfig, task: str, model: torch.nn.Module, spec: InputSpec, device: Any
) -> dict[str, Any]:
    return {
        "name": model_config.name,
        "task": task,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "backend": model_config.backend,
        "input": dataclasses.asdict(spec),
    }


def build_work(
    config: RunConfig,
    model_config: ModelConfig,
    clock: Clock,
    *,
    warm_up_batch: torch.Tensor | None = None,
    sync: Any = None,
    stream: Any = None,
    net: torch.nn.Module | None = None,
    frame_size: tuple[int, int] | None = None,
    threads: int = 1,
) -> Built:
    """One model's stage plan with its own timer (and, given a batch, warmed up on it, untimed). ``net``:
    the model already built; ``frame_size`` (width, height of the decoded frames; else the warm-up batch's)
    and ``threads`` shape an ONNX Runtime session (``--backend onnxruntime``)."""
    sub = single_config(config, model_config)
    prep_device, model_device, post_device = resolve_devices(sub)
    name = model_config.name
    task = task_of(name)
    model = net if net is not None else build_model(name, model_config.weights, seed=config.seed)
    spec = input_spec(name, model)
    timer = StageTimer(clock, sync=sync)
    runner: Any
    if model_config.backend == "onnxruntime":
        if frame_size is None:
            if warm_up_batch is None:
                raise ValueError("an ONNX Runtime model needs the frame size or a warm-up batch")
            frame_size = (int(warm_up_batch.shape[-1]), int(warm_up_batch.shape[-2]))
        runner, _ = build_onnx_runner(
            sub,
            model,
            task,
            model_device,
            input_shape=model_input_shape(sub, spec, frame_size),
            threads=threads,
            clock=clock,
        )
    else:
        runner = make_runner(model, task, model_config, model_device, seed=config.seed, span=timer.span)
    plan = plan_stages(
        batch_device=batch_device(sub),
        prep=Preprocessor(config.preprocess.level, spec),
        prep_device=prep_device,
        model=runner,
        model_warm_up=runner.warm_up,
        input_device=model_device,
        output_device=model_device,
        post=make_postprocess(task, runner.model, amp=model_config.amp),
        post_device=post_device,
        results_back=functools.partial(results_to_host, wait=False),
    )
    info = _info(model_config, task, model, spec, model_device)
    if model_config.backend == "onnxruntime":
        info["onnxruntime"] = runner.info()
    built = Built(ModelWork(name, plan, timer, clock, stream), info, spec)
    if warm_up_batch is not None:
        warm_up(built, warm_up_batch, config.batch_size)
    return built


def warm_up(built: Built, batch: torch.Tensor, batch_size: int) -> None:
    """One untimed pass (first-call allocation, cuDNN autotuning); a batch that does not fit says so."""
    name = built.work.name
    try:
        built.work.plan.warm_up(batch)
    except torch.OutOfMemoryError:
        raise OutOfMemory(
            f"out of memory running {name} at batch size {batch_size}; lower --batch-size."
        ) from None
    except RuntimeError as exc:
        if not host_out_of_memory(exc):
            raise
        raise OutOfMemory(
            f"out of host memory running {name} at batch size {batch_size}; lower --batch-size."
        ) from None
    built.work.timer.reset()


def share_preprocessing(builds: list[Built], level: str) -> dict[str, list[str]]:
    """Models that need the same transform on the same device share one preprocessing per batch; returns
    each sharing model's partners."""
    groups: dict[tuple[Any, ...], list[Built]] = {}
    for built in builds:
        prep = next(s for s in built.work.plan.stages if s.name == Stage.PREP)
        groups.setdefault((level, built.spec, str(prep.device)), []).append(built)
    partners: dict[str, list[str]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        shared = SharedPrep(next(s for s in group[0].work.plan.stages if s.name == Stage.PREP).run)
        for built in group:
            for stage in built.work.plan.stages:
                if stage.name == Stage.PREP:
                    stage.run = shared
            partners[built.work.name] = [b.work.name for b in group if b is not built]
    return partners


def model_threads(strategy: str, cores: int, models: int, torch_threads: int | None) -> int:
    """Torch intra-op threads per model: every core when the models run one at a time; the cores divided
    among them (at least one each) when they run at once; ``--torch-threads`` when given."""
    if torch_threads:
        return torch_threads
    return max(1, cores // models) if strategy in CONCURRENT else cores


def thread_record(strategy: str, plan: ThreadPlan, models: int, per_model: int) -> dict[str, Any]:
    at_once = models if strategy in CONCURRENT else 1
    return {
        "strategy": strategy,
        "cores": plan.core_count,
        "models": models,
        "torch_threads_per_model": per_model,
        "models_at_once": at_once,
        "busy_threads": at_once * per_model,
        "how": "the models run one at a time, each with every bound core"
        if at_once == 1
        else "the models run at once, the bound cores divided among them (at least one thread each)",
    }


@dataclass
class SeveralParts:
    source: Source
    strategy: Strategy
    names: list[str]
    read_timer: StageTimer
    models: dict[str, dict[str, Any]]
    threads: ThreadPlan
    plan: dict[str, Any]
    setup: dict[str, float]
    uses_cuda: bool
    processes: ProcessStrategy | None = None


def _dummy(config: RunConfig, source: Source) -> torch.Tensor:
    width, height = source.output_size or (source.info.width or 224, source.info.height or 224)
    frames = min(config.batch_size, source.info.frame_count or config.batch_size)
    return torch.zeros((frames, 3, height, width), dtype=torch.uint8)


def _decode_size(config: RunConfig, specs: list[tuple[ModelConfig, InputSpec]], source: Source) -> Any:
    """``--decode-size auto`` with several models: the largest size any of them needs (native if one does)."""
    sizes = [decode_size(single_config(config, m), spec, source.info) for m, spec in specs]
    if any(size is None for size in sizes):
        return None
    return max(sizes, key=lambda size: size[0] * size[1])  # type: ignore[index]


def assemble(config: RunConfig, threads: ThreadPlan, clock: Clock) -> SeveralParts:
    """Check and build every part, before the run directory exists."""
    strategy_name = config.multi_model
    models = config.model_list
    names = [m.name for m in models]
    for model in models:
        task_of(model.name)  # an unknown name is one line before anything is built
        if model.backend == "onnxruntime" and strategy_name == "streams":
            raise ConfigError(
                "--multi-model streams puts each torch model on a CUDA stream of its own, but ONNX Runtime "
                "sessions keep their own streams; use --multi-model threads (or --backend torch)."
            )
    per_model = model_threads(strategy_name, threads.core_count, len(models), config.torch_threads)
    uses_cuda = any(m.on_gpu for m in models) or config.preprocess.on_gpu or config.postprocess.on_gpu
    read_timer = StageTimer(clock)
    setup: dict[str, float] = {}
    t = clock()
    source = make_source(
        config.source,
        clock=clock,
        threads=threads.decode_threads,
        seed=config.seed,
        batch_size=config.batch_size,
        span=read_timer.span,
    )
    source.open()
    setup["source_open_s"] = clock() - t
    try:
        t = clock()
        if strategy_name == "processes":
            specs = []
            for model in models:
                task = task_of(model.name)
                net = (
                    build_model(model.name, model.weights, seed=config.seed) if task == "detection" else None
                )
                specs.append((model, input_spec(model.name, net)))  # type: ignore[arg-type]
            source.set_output_size(_decode_size(config, specs, source))
            dummy = _dummy(config, source)
            cores = split_cores(threads.cores if threads.bound else None, len(models))
            workers = [WorkerSpec(config, m, c, per_model) for m, c in zip(models, cores, strict=True)]
            processes = ProcessStrategy(workers, tuple(dummy.shape), clock)
            processes.start()
            info = {
                name: {
                    **processes.info[name],
                    "process": {"pid": processes.info[name]["pid"], "cores": list(c) if c else None},
                }
                for name, c in zip(names, cores, strict=True)
            }
            setup["model_build_s"] = clock() - t
            plan = thread_record(strategy_name, threads, len(models), per_model)
            plan["process_cores"] = {n: list(c) if c else None for n, c in zip(names, cores, strict=True)}
            plan["handoff"] = {
                "shared_memory_bytes": processes.shared_bytes,
                "bytes_sent_per_step": processes.message_bytes,
            }
            return SeveralParts(
                source, processes, names, read_timer, info, threads, plan, setup, uses_cuda, processes
            )
        streams = strategy_name in ("streams", "threads", "asyncio-threads") and uses_cuda
        nets = [build_model(m.name, m.weights, seed=config.seed) for m in models]
        source.set_output_size(  # before an ONNX export, which takes the frames' size
            _decode_size(
                config, [(m, input_spec(m.name, n)) for m, n in zip(models, nets, strict=True)], source
            )
        )
        frame_size = source.output_size or (source.info.width or 224, source.info.height or 224)
        builds = []
        for model, net in zip(models, nets, strict=True):
            stream = torch.cuda.Stream() if streams and model.on_gpu else None
            sync = None
            if model.on_gpu and strategy_name != "streams":
                sync = stream.synchronize if stream is not None else torch.cuda.synchronize
            builds.append(
                build_work(
                    config, model, clock, sync=sync, stream=stream, net=net, frame_size=frame_size,
                    threads=per_model,
                )
            )  # fmt: skip
        dummy = _dummy(config, source)
        setup["model_build_s"] = clock() - t
        t = clock()
        for built in builds:
            warm_up(built, dummy, config.batch_size)
        partners = share_preprocessing(builds, config.preprocess.level)
        setup["warmup_s"] = clock() - t
        works = [b.work for b in builds]
        strategy: Strategy
        if strategy_name == "threads":
            strategy = ThreadStrategy(works, torch_threads=per_model)
        elif strategy_name in ("asyncio", "asyncio-threads"):
            strategy = AsyncioStrategy(
                works, to_thread=strategy_name == "asyncio-threads", torch_threads=per_model
            )
        elif strategy_name == "streams":
            strategy = StreamStrategy(works)
        else:
            strategy = SerialStrategy(works)
        info = {b.work.name: {**b.info, "prep_shared_with": partners.get(b.work.name, [])} for b in builds}
        plan = thread_record(strategy_name, threads, len(models), per_model)
        strategy.start()
        return SeveralParts(source, strategy, names, read_timer, info, threads, plan, setup, uses_cuda)
    except BaseException:
        source.close()
        raise


def run_several(
    config: RunConfig, *, observer: RunObserver | None = None, clock: Clock = monotonic
) -> RunResult:
    """Run every model of ``config`` on each frame under ``config.multi_model`` (see the module docstring)."""
    if config.multi_model == "all":
        raise ConfigError(
            "--multi-model all runs each strategy as a run of its own: run it with framescope run, or call "
            "run_strategies(config) from framescope._multi."
        )
    started_at = time.time()
    malloc = apply_malloc(config.malloc)
    for model in config.model_list:
        resolve_devices(single_config(config, model))  # CUDA asked for without one: an error before binding
    threads = configure_threads(
        config.cores,
        torch_threads=config.torch_threads,
        decode_threads=config.source.decode_threads,
        pipeline="sync",
    )
    memory = PeakMemory()
    memory.start()
    try:
        parts = assemble(config, threads, clock)
        try:
            return SeveralPhase(
                config, parts, observer or RunObserver(), clock, started_at=started_at, memory=memory,
                malloc=malloc,
            ).run()  # fmt: skip
        finally:
            parts.strategy.close()
            parts.source.close()
    finally:
        restore_threads(threads)


class SeveralPhase:
    """The loop phase of several models: the recorder opens the run directory, the loop runs, every step's
    rows go to disk as they happen, and the summary ends it."""

    def __init__(
        self,
        config: RunConfig,
        parts: SeveralParts,
        watcher: RunObserver,
        clock: Clock,
        *,
        started_at: float,
        memory: PeakMemory,
        malloc: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.parts, self.watcher, self.clock = config, parts, watcher, clock
        self.started_at, self.memory, self.malloc = started_at, memory, malloc
        self.stopped_by_observer = False

    def _threads(self) -> dict[str, Any]:
        plan = self.parts.threads
        return {
            "cores": plan.cores,
            "bound": plan.bound,
            "bind_ignored": plan.bind_ignored,
            "torch": plan.torch_threads,
            "decode": plan.decode_threads,
            "notes": [],
            "multi": self.parts.plan,
        }

    def _context(self) -> dict[str, Any]:
        config, source, models = self.config, self.parts.source, self.parts.models
        first = next(iter(models.values()))
        return {
            "framescope_version": __version__,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "model": {
                "name": ",".join(self.parts.names),
                "task": ", ".join(sorted({m["task"] for m in models.values()})),
                "parameters": sum(m["parameters"] for m in models.values()),
                "device": first["device"],
                "input": first["input"],
                "models": list(models.values()),
            },
            "mode": config.model.mode,
            "pipeline": config.pipeline,
            "multi_model": config.multi_model,
            "batch_size": config.batch_size,
            "timing_method": "cuda-events"
            if config.multi_model == "streams"
            else ("cuda-sync" if self.parts.uses_cuda else "host-wall"),
            "source": dataclasses.asdict(source.info),
            "decode_size": list(source.output_size) if source.output_size else None,
            "deadline_ms": None,
            "threads": self._threads(),
            "malloc": self.malloc,
            "setup": self.parts.setup,
            "setup_cpu": {},
        }

    def run(self) -> RunResult:
        config, parts = self.config, self.parts
        system = system_info.collect()
        self.system = system
        with MultiRecorder.create(
            Path(config.output_dir), config.run_name, parts.names, batch_size=config.batch_size
        ) as recorder:
            context = self._context()
            recorder.start(config=config.to_dict(), system=system, context=context)
            expected = None
            if parts.source.info.frame_count:
                expected = -(-parts.source.info.frame_count // config.batch_size)
                expected = min(expected, config.max_steps or expected)
            self.watcher.on_start(
                StartInfo(
                    run_dir=recorder.run_dir,
                    csv_path=recorder.csv_path,
                    config=config,
                    system=system,
                    source=parts.source.info,
                    model=context["model"],
                    threads=context["threads"],
                    timing_method=context["timing_method"],
                    expected_steps=expected,
                )
            )
            for note in parts.source.warnings:
                self.watcher.on_warning(note)
            return self._loop(recorder)

    def _stop_requested(self) -> bool:
        if self.watcher.stop_requested():
            self.stopped_by_observer = True
        return self.stopped_by_observer

    def _loop(self, recorder: MultiRecorder) -> RunResult:
        config, parts = self.config, self.parts

        processes = parts.processes

        def on_step(timing: MultiStepTiming) -> None:
            self.watcher.on_step(recorder.record(timing))

        def before_step(step: int) -> None:
            if processes is not None:
                processes.where = f"at step {step}"

        def on_solo(name: str, step: int, timing: ModelTiming) -> None:
            recorder.record_solo(name, timing)

        profiler = profiler_window(config, recorder.run_dir, cuda=parts.uses_cuda)
        loop = MultiLoop(
            batch_size=config.batch_size,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            solo_steps=config.solo_steps,
            read_timer=parts.read_timer,
            clock=self.clock,
            on_step=on_step,
            on_solo=on_solo,
            before_step=before_step,
            profiler=profiler,
            should_stop=self._stop_requested,
            handoff=parts.processes.handoff if parts.processes is not None else (lambda batch: 0.0),
        )
        cpu_meter = CpuLoadMeter(parts.threads.cores, self.clock)
        sampler = CpuWaitSampler()
        outcome = Outcome()
        try:
            with outcome.classify(config.batch_size), profiler, sampler:
                try:
                    run_models(parts.source, parts.strategy, parts.names, loop)
                except ModelFailed as exc:
                    message = f"model {exc.model} failed at step {recorder.rows_written}: {exc}"
                    raise ModelRunError(f"{message}; the rows written before are kept.") from exc
                if not recorder.rows_written:
                    raise SourceError(
                        f"{parts.source.info.uri} delivered no frame; nothing was measured: check the input."
                    )
        finally:
            result = self._finish(
                recorder,
                status=outcome.status,
                error=outcome.error,
                profiler=profiler,
                cpu_meter=cpu_meter,
                sampler=sampler,
            )
        return result

    def _finish(
        self,
        recorder: MultiRecorder,
        *,
        status: str,
        error: str | None,
        profiler: ProfilerWindow,
        cpu_meter: CpuLoadMeter,
        sampler: CpuWaitSampler,
    ) -> RunResult:
        parts = self.parts
        if parts.processes is not None:
            parts.processes.close()  # the workers' last word: their peak memory
            for name, ended in parts.processes.ended.items():
                parts.models[name].setdefault("process", {})["peak_rss_mb"] = ended.get("peak_rss_mb")
        cpu: dict[str, Any] = cpu_meter.read().as_dict()
        cpu["wait"] = sampler.summary()
        facts = {
            "run_time_s": time.time() - self.started_at,
            "threads": self._threads(),
            "cpu": cpu,
            "frames_skipped": parts.source.frames_skipped,
            "trace": profiler.written.name if profiler.written is not None else None,
            "trace_error": profiler.failure,
            "source_notes": list(parts.source.warnings),
            "stopped_by_observer": self.stopped_by_observer,
            "memory": {
                **(self.memory.read(cuda=parts.uses_cuda) or {}),
                "loop_process_peak_rss_mb": peak_rss_mb(),
            },
        }
        rows = recorder.frame()
        summary = recorder.summarize(rows, status=status, error=error, facts=facts, models=parts.models)
        summary["findings"] = []
        summary["warnings"] = list(parts.source.warnings)
        summary["run_time_s"] = time.time() - self.started_at
        full = rows.copy()
        for column in COLUMNS:
            if column not in full:
                full[column] = pd.NA
        result = RunResult(
            run_dir=recorder.run_dir,
            config=redact_value(self.config.to_dict()),
            system=self.system,
            rows=full,
            summary=summary,
            csv_path=recorder.csv_path,
            extra={"frames_csv": recorder.frames_path, "csvs": recorder.csv_paths()},
        )
        try:
            recorder.write_summary(summary)
        except FramescopeError as exc:
            summary["warnings"].append(str(exc))
            if status == "complete":
                summary["status"], summary["error"] = "failed", str(exc)
                self.watcher.on_finish(result)
                raise
        self.watcher.on_finish(result)
        return result


# --- --multi-model all ----------------------------------------------------------------------------------


@dataclass
class StrategyRun:
    strategy: str
    result: RunResult | None
    error: str | None


def applicable_strategies(config: RunConfig) -> list[str]:
    """The strategies ``--multi-model all`` runs: every one, streams only when every model is a torch model
    on the GPU."""
    streams = all(m.on_gpu and m.backend == "torch" for m in config.model_list)
    return [s for s in STRATEGIES if s != "streams" or streams]


def run_strategies(
    config: RunConfig, *, on_run: Callable[[StrategyRun], None] | None = None
) -> tuple[Path, list[StrategyRun]]:
    """Each applicable strategy in turn on the same job, each an ordinary run directory
    ``PARENT/STRATEGY/round-1`` (the experiment runner's layout); a strategy that fails is a recorded
    outcome. Every run goes to the end of the input or ``--max-steps``: the same batches for each."""
    from framescope.experiment import Candidate, Experiment, StopRule, Trial

    names = [m.name for m in config.model_list]
    name = config.run_name or f"{'+'.join(names)}_{time.strftime('%Y%m%d-%H%M%S')}_P{os.getpid()}_all"
    parent = Path(config.output_dir) / name
    if parent.exists():
        raise ConfigError(f"{str(parent)!r} already exists; pass another --run-name or --output-dir.")
    runs: list[StrategyRun] = []

    def on_trial(trial: Trial) -> None:
        run = StrategyRun(trial.candidate, trial.result, trial.error if trial.status != "complete" else None)
        runs.append(run)
        if on_run is not None:
            on_run(run)

    strategies = applicable_strategies(config)
    experiment = Experiment(
        config,
        [Candidate(s, {"multi_model": s}) for s in strategies],
        parent=parent,
        rounds=1,
        stop=StopRule(min_steps=sys.maxsize, max_seconds=math.inf),  # no early stop: the same input for each
        on_trial=on_trial,
    )
    experiment.run()
    if experiment.interrupted:
        raise KeyboardInterrupt
    return parent, runs
