"""The loop phase of a run: everything is set up; steps run, rows and the summary go to the run directory."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from framescope._observer import RunObserver, StartInfo
from framescope._placement import deadline_ms
from framescope._version import __version__
from framescope.config import RunConfig
from framescope.errors import FramescopeError, Terminated
from framescope.instrument import Clock, ProfilerWindow, StageTimer
from framescope.instrument.cpu_load import CpuLoadMeter, load_warnings
from framescope.instrument.events import EventTimer
from framescope.instrument.sampler import RunnableSampler
from framescope.pipeline import (
    Row,
    StepPlan,
    ThreadPlan,
    busy_elsewhere_warnings,
    rebalance_async,
    run_async,
    run_sync,
)
from framescope.records import (
    COLUMNS,
    PRODUCER_STAGES,
    STAGE_COLUMNS,
    SUMMARY_FILE,
    RunResult,
    RunWriter,
    summarize,
)
from framescope.sources import Source, SourceInfo

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
        self.sampler = RunnableSampler(self.threads.core_count)
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
        threads, reason = rebalance_async(
            self.threads.core_count, self.threads.torch_threads, producer_s, model_s
        )
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
        runnable = self.sampler.summary()
        if runnable is not None:
            summary["cpu"].update(runnable)
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
