"""The loop phase of a run: everything is set up; steps run, rows and the summary go to the run directory."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from framescope._observer import RunObserver, StartInfo
from framescope._placement import deadline_ms
from framescope._secrets import redact, redact_value
from framescope._version import __version__
from framescope.config import RunConfig
from framescope.errors import FramescopeError, OutputError, SourceError, Terminated
from framescope.instrument import Clock, ProfilerWindow, StageTimer
from framescope.instrument.cpu_load import CpuLoadMeter, load_warnings
from framescope.instrument.events import EventTimer
from framescope.instrument.sampler import CpuWaitSampler
from framescope.pipeline import (
    Row,
    StepPlan,
    ThreadPlan,
    ThreadTrial,
    cpu_wait_warnings,
    idle_core_warnings,
    run_async,
    run_sync,
    trial_candidates,
    trial_fits,
)
from framescope.records import (
    COLUMNS,
    STAGE_COLUMNS,
    SUMMARY_FILE,
    RunResult,
    RunWriter,
    summarize,
)
from framescope.sources import Source, SourceInfo, input_shortfall, shortfall_warning

TRACE_FILE = "torch_trace.json"


def _expected_steps(config: RunConfig, info: SourceInfo) -> int | None:
    by_frames = math.ceil(info.frame_count / config.batch_size) if info.frame_count else None
    candidates = [n for n in (by_frames, config.max_steps) if n is not None]
    return min(candidates) if candidates else None


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
    """Decisions about threads taken during the run (the async thread plan's trial)."""
    sampler: CpuWaitSampler = field(default_factory=CpuWaitSampler)
    trial: ThreadTrial | None = None

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
        self.trial = self._thread_trial()
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
                        trial=self.trial,
                        **common,
                    )
                else:
                    run_sync(self.source, self.plan, **common)
            if not rows:
                raise SourceError(
                    f"{self.source.info.uri} delivered no frame ({self.source.frames_skipped} undecodable "
                    "packet(s) or file(s) skipped); nothing was measured: check the input."
                )
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
            error = str(exc) if isinstance(exc, FramescopeError) else redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            result = self._finish(rows, status, error, profiler)
        return result

    def _thread_trial(self) -> ThreadTrial | None:
        """Async, with the thread counts left to framescope: measure the candidate plans right after the
        warm-up (see :mod:`framescope.pipeline._trial`), if the run is long enough to afford it."""
        config, threads = self.config, self.threads
        if config.pipeline != "async" or config.torch_threads is not None:
            return None
        candidates = trial_candidates(threads.core_count, threads.decode_threads)
        if not candidates:
            return None
        trial = ThreadTrial(candidates)
        expected = _expected_steps(config, self.source.info)
        if not trial_fits(expected, config.warmup_steps, trial.steps):
            self.thread_notes.append(
                f"async thread plan not measured: the run's {expected} step(s) are too few to spend "
                f"{trial.steps} on trying {' and '.join(map(str, candidates))} torch threads; the model "
                f"kept {threads.torch_threads}"
            )
            return None
        return trial

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
            "threads": self._threads_record(),
            "setup": self.setup,
            "cpu": load.as_dict(),
            "trace": profiler.written.name if profiler.written is not None else None,
        }
        summary.update(summarize(frame, config.pipeline, deadline_ms(config, self.source.info)))
        new_warnings = load_warnings(load, "during the run") + self.source.warnings
        shortfall = input_shortfall(self.source) if status == "complete" else None
        summary["input_shortfall"] = shortfall
        if shortfall is not None:
            new_warnings.append(shortfall_warning(shortfall, self.source.info.uri))
        if self.source.frames_skipped:
            new_warnings.append(
                f"{self.source.frames_skipped} undecodable packet(s) or file(s) were skipped in the input."
            )
        if profiler.failure is not None:
            new_warnings.append(profiler.failure)
        elif config.profile.enabled and profiler.written is None:
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
        wait = self.sampler.summary()
        summary["cpu"]["wait"] = wait
        trial = summary["threads"].get("trial")
        new_warnings += cpu_wait_warnings(wait, load.others, self.threads, trial)
        new_warnings += idle_core_warnings(
            summary.get("pace_stage"), load.ours, load.others, self.threads, trial is not None
        )
        summary["warnings"] = self.setup_warnings + new_warnings
        summary_error = self._write_summary(summary, new_warnings)
        for message in new_warnings:
            self.watcher.on_warning(message)
        result = RunResult(
            run_dir=self.writer.run_dir,
            config=redact_value(config.to_dict()),
            system=self.system,
            rows=frame,
            summary=summary,
            csv_path=self.writer.csv_path,
        )
        self.watcher.on_finish(result)
        if summary_error is not None:
            raise summary_error from None
        return result

    def _threads_record(self) -> dict[str, Any]:
        """``summary.threads``: the plan the run ended with, the trial's evidence where it ran."""
        record: dict[str, Any] = {
            "cores": self.threads.cores,
            "torch": self.threads.torch_threads,
            "decode": self.threads.decode_threads,
            "notes": self.thread_notes,
        }
        if self.trial is not None and self.trial.chosen is not None:
            self.threads.torch_threads = record["torch"] = self.trial.chosen
            record["trial"] = self.trial.evidence()
            if not self.thread_notes or self.thread_notes[-1] != self.trial.note():
                self.thread_notes.append(self.trial.note())
        return record

    def _write_summary(self, summary: dict[str, Any], new_warnings: list[str]) -> OutputError | None:
        """Write summary.json; if it cannot be written (a full disk), return the error the run ends with,
        the in-memory summary marked failed with it. When another failure is already ending the run, that
        one stays the run's error and this one becomes a warning."""
        try:
            self.writer.write_json(SUMMARY_FILE, summary)
        except OutputError as exc:
            if summary["status"] == "complete" or self.writer.failed:
                summary["status"], summary["error"] = "failed", str(exc)
                return exc
            summary["warnings"].append(str(exc))
            new_warnings.append(str(exc))
        return None
