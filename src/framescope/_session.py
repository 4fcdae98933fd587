"""The loop phase of a run: the parts are built and warmed up; the recorder opens the run directory, the loop
runs, every step's row goes to disk as it happens, and the summary (with what diagnosis found) ends it."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from framescope._observer import RunObserver, StartInfo
from framescope._placement import deadline_ms, max_delay_s
from framescope._secrets import redact, redact_value
from framescope._version import __version__
from framescope.config import RunConfig
from framescope.diagnose import Finding, diagnose
from framescope.errors import FramescopeError, OutOfMemory, OutputError, SourceError, Terminated
from framescope.instrument import Clock, ProfilerWindow
from framescope.instrument import system as system_info
from framescope.instrument.cpu_load import CpuLoadMeter
from framescope.instrument.memory import PeakMemory
from framescope.instrument.sampler import CpuWaitSampler
from framescope.pipeline import (
    MIN_ROUNDS,
    STEPS_PER_WINDOW,
    Batcher,
    LoopSettings,
    StepTiming,
    ThreadTrial,
    run_async,
    run_sync,
    trial_candidates,
    trial_rounds,
)
from framescope.records import COLUMNS, STAGE_COLUMNS, TRACE_FILE, Row, RunRecorder, RunResult, SourceTally
from framescope.sources import ManySources, SourceInfo, input_shortfall

if TYPE_CHECKING:  # _run imports this module
    from framescope._run import Parts


def expected_steps(config: RunConfig, info: SourceInfo) -> int | None:
    by_frames = math.ceil(info.frame_count / config.batch_size) if info.frame_count else None
    candidates = [n for n in (by_frames, config.max_steps) if n is not None]
    return min(candidates) if candidates else None


def profiler_window(config: RunConfig, run_dir: Path, *, cuda: bool) -> ProfilerWindow:
    """The torch.profiler window ``--torch-profile`` asks for, its trace written into ``run_dir``."""
    profile = config.profile
    return ProfilerWindow(
        enabled=profile.enabled,
        trace_path=run_dir / TRACE_FILE,
        wait=profile.wait,
        warmup=profile.warmup,
        active=profile.active,
        cuda=cuda,
    )


@dataclass
class Outcome:
    """How a run's loop ended, for its summary: ``complete``, ``interrupted`` or ``failed``, and why."""

    status: str = "complete"
    error: str | None = None

    @contextmanager
    def classify(self, batch_size: int) -> Iterator[None]:
        """Record how the block ends and let the exception go on: Ctrl-C or SIGTERM is ``interrupted``; a
        device out of memory becomes :class:`OutOfMemory` naming the batch size; anything else is ``failed``
        with its message (a password in a URL masked)."""
        try:
            yield
        except KeyboardInterrupt as exc:
            self.status = "interrupted"
            self.error = (
                "stopped by SIGTERM" if isinstance(exc, Terminated) else "stopped by the user (Ctrl-C)"
            )
            raise
        except torch.OutOfMemoryError:
            self.status = "failed"
            self.error = f"out of memory at batch size {batch_size}; lower --batch-size."
            raise OutOfMemory(self.error) from None
        except Exception as exc:
            self.status = "failed"
            known = isinstance(exc, FramescopeError)
            self.error = str(exc) if known else redact(f"{type(exc).__name__}: {exc}")
            raise


class LoopPhase:
    """Runs the loop of one run and records it (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        parts: Parts,
        watcher: RunObserver,
        clock: Clock,
        started_at: float,
        *,
        memory: PeakMemory | None = None,
        malloc: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.parts, self.watcher, self.clock = config, parts, watcher, clock
        self.started_at = started_at
        self.memory = memory
        self.malloc = malloc
        self.thread_notes: list[str] = []
        self.printed: set[str] = set()
        self.stopped_by_observer = False
        self.trial = self._thread_trial()
        many = parts.source if isinstance(parts.source, ManySources) else None
        self.tally = (
            SourceTally([s.info.uri for s in many.sources], deadline_ms(config, many.info))
            if many is not None
            else None
        )
        self.batcher = (
            Batcher(config.batching, config.largest_batch, max_delay_s(config, many.info), clock)
            if many is not None
            else None
        )

    # --- the run's record -------------------------------------------------------------------------------

    def _threads(self) -> dict[str, Any]:
        """``summary.threads``: the plan, the trial's evidence where it ran."""
        plan = self.parts.threads
        record: dict[str, Any] = {
            "cores": plan.cores,
            "bound": plan.bound,
            "bind_ignored": plan.bind_ignored,
            "torch": plan.torch_threads,
            "decode": plan.decode_threads,
            "notes": self.thread_notes,
        }
        if self.trial is not None and self.trial.chosen is not None:
            plan.torch_threads = record["torch"] = self.trial.chosen
            record["trial"] = self.trial.evidence()
            if self.trial.note() not in self.thread_notes:
                self.thread_notes.append(self.trial.note())
        return record

    def _batching(self) -> dict[str, Any]:
        """``summary.batching``: how batches were formed."""
        if self.batcher is None:
            return {"mode": "fixed", "sources": 1, "batch_size": self.config.batch_size}
        return {
            "mode": self.batcher.mode,
            "sources": len(self.tally.uris) if self.tally is not None else 1,
            "batch_size": self.config.batch_size,
            "max_batch": self.batcher.max_batch if self.batcher.mode == "dynamic" else None,
            "max_delay_ms": self.batcher.max_delay_s * 1000.0 if self.batcher.mode == "dynamic" else None,
        }

    def _context(self) -> dict[str, Any]:
        """What the run knows before its first step (the ``running`` summary, and a killed run's context)."""
        config, source = self.config, self.parts.source
        return {
            "framescope_version": __version__,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "model": self.parts.model,
            "mode": config.model.mode,
            "pipeline": config.pipeline,
            "batch_size": config.batch_size,
            "timing_method": self.parts.timers.method,
            "source": dataclasses.asdict(source.info),
            "decode_size": list(source.output_size) if source.output_size else None,
            "deadline_ms": deadline_ms(config, source.info),
            "batching": self._batching(),
            "threads": self._threads(),
            "malloc": self.malloc,
            "setup": self.parts.setup,
            "setup_cpu": self.parts.setup_cpu,
        }

    def _system(self) -> dict[str, Any]:
        system = system_info.collect()
        plan = self.parts.threads
        system["threads"] = {
            "cores": plan.cores,
            "bound": plan.bound,
            "torch_threads": plan.torch_threads,
            "decode_threads": plan.decode_threads,
        }
        return system

    def _record_of(self, summary: dict[str, Any], rows: pd.DataFrame, recorder: RunRecorder) -> RunResult:
        return RunResult(
            run_dir=recorder.run_dir,
            config=redact_value(self.config.to_dict()),
            system=self.system,
            rows=rows,
            summary=summary,
            csv_path=recorder.csv_path,
        )

    def _tell(self, findings: list[Finding], notes: list[str]) -> list[str]:
        """The warnings (source notes, then warning-level findings) not told yet, told to the observer."""
        messages = [*notes, *(f.message for f in findings if f.severity != "info")]
        new = [m for m in messages if m not in self.printed]
        for message in new:
            self.printed.add(message)
            self.watcher.on_warning(message)
        return messages

    # --- the thread plan's trial ------------------------------------------------------------------------

    def _thread_trial(self) -> ThreadTrial | None:
        """Async, with the thread counts left to framescope: measure the candidate plans right after the
        warm-up (see :mod:`framescope.pipeline._trial`), if the run is long enough to afford it."""
        config, plan = self.config, self.parts.threads
        if config.pipeline != "async" or config.torch_threads is not None:
            return None
        if config.model.backend == "onnxruntime":  # its session's threads are fixed when it is made
            self.thread_notes.append(
                f"async thread plan not measured: onnxruntime's session keeps the {plan.torch_threads} "
                "intra-op threads it was made with; set --torch-threads to choose them"
            )
            return None
        candidates = trial_candidates(plan.core_count, plan.decode_threads)
        if not candidates:
            return None
        expected = expected_steps(config, self.parts.source.info)
        per_round = len(candidates) * STEPS_PER_WINDOW
        rounds = trial_rounds(expected, config.warmup_steps, per_round)
        if not rounds:
            self.thread_notes.append(
                f"async thread plan not measured: the run's {expected} step(s) are too few to spend "
                f"{MIN_ROUNDS * per_round} on trying {' and '.join(map(str, candidates))} torch threads; the "
                f"model kept {plan.torch_threads}"
            )
            return None
        return ThreadTrial(candidates, max_rounds=rounds)

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        config, parts = self.config, self.parts
        self.system = self._system()
        with RunRecorder.create(
            Path(config.output_dir), config.run_name, config.model.name, batch_size=config.batch_size
        ) as recorder:
            context = self._context()
            recorder.start(config=config.to_dict(), system=self.system, context=context)
            self.watcher.on_start(
                StartInfo(
                    run_dir=recorder.run_dir,
                    csv_path=recorder.csv_path,
                    config=config,
                    system=self.system,
                    source=parts.source.info,
                    model=parts.model,
                    threads=context["threads"],
                    timing_method=parts.timers.method,
                    expected_steps=expected_steps(config, parts.source.info),
                )
            )
            starting = self._record_of(context, pd.DataFrame(columns=list(COLUMNS)), recorder)
            self._tell(diagnose(starting), list(parts.source.warnings))
            return self._loop(recorder)

    def _loop(self, recorder: RunRecorder) -> RunResult:
        config, parts = self.config, self.parts

        def on_step(timing: StepTiming) -> None:
            row: Row = recorder.record(timing)
            if self.tally is not None:
                self.tally.add(timing)
            self.watcher.on_step(row)

        profiler = profiler_window(config, recorder.run_dir, cuda=parts.uses_cuda)
        loop = LoopSettings(
            batch_size=config.batch_size,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            timer=parts.timers.model,
            clock=self.clock,
            profiler=profiler,
            on_step=on_step,
            should_stop=self._stop_requested,
            batcher=self.batcher,
        )
        cpu_meter = CpuLoadMeter(parts.threads.cores, self.clock)
        sampler = CpuWaitSampler()
        outcome = Outcome()
        try:
            with outcome.classify(config.batch_size), profiler, sampler:
                if config.pipeline == "async":
                    run_async(
                        parts.source,
                        parts.plan,
                        loop,
                        depth=config.prefetch,
                        events=parts.timers.events,
                        producer_timer=parts.timers.producer,
                        producer_events=parts.timers.producer_events,
                        trial=self.trial,
                    )
                else:
                    run_sync(parts.source, parts.plan, loop)
                if not recorder.rows_written:
                    raise SourceError(
                        f"{parts.source.info.uri} delivered no frame ({parts.source.frames_skipped} "
                        "undecodable packet(s) or file(s) skipped); nothing was measured: check the input."
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

    def _stop_requested(self) -> bool:
        if self.watcher.stop_requested():
            self.stopped_by_observer = True
        return self.stopped_by_observer

    # --- the end ----------------------------------------------------------------------------------------

    def _facts(
        self, status: str, profiler: ProfilerWindow, cpu_meter: CpuLoadMeter, sampler: CpuWaitSampler
    ) -> dict[str, Any]:
        """What the run measured, beyond its rows, once it ended."""
        source, timer = self.parts.source, self.parts.timers.model
        cpu: dict[str, Any] = cpu_meter.read().as_dict()
        parallelism = timer.parallelism()
        if parallelism:
            cpu["stage_parallelism"] = {
                STAGE_COLUMNS.get(stage, stage): round(value, 2) for stage, value in parallelism.items()
            }
        cpu["wait"] = sampler.summary()
        many = {"sources": self.tally.summary()} if self.tally else {}
        return {
            **many,
            "run_time_s": time.time() - self.started_at,
            "threads": self._threads(),
            "cpu": cpu,
            "frames_skipped": source.frames_skipped,
            "input_shortfall": input_shortfall(source)
            if status == "complete" and not self.stopped_by_observer
            else None,
            "trace": profiler.written.name if profiler.written is not None else None,
            "trace_error": profiler.failure,
            "source_notes": list(source.warnings),
            "stopped_by_observer": self.stopped_by_observer,
            "memory": self.memory.read(cuda=self.parts.uses_cuda) if self.memory is not None else None,
        }

    def _finish(
        self,
        recorder: RunRecorder,
        *,
        status: str,
        error: str | None,
        profiler: ProfilerWindow,
        cpu_meter: CpuLoadMeter,
        sampler: CpuWaitSampler,
    ) -> RunResult:
        facts = self._facts(status, profiler, cpu_meter, sampler)
        rows = recorder.frame()
        summary = recorder.summarize(rows, status=status, error=error, facts=facts)
        result = self._record_of(summary, rows, recorder)
        findings = diagnose(result)
        summary["findings"] = [finding.as_dict() for finding in findings]
        summary["warnings"] = [*facts["source_notes"], *(f.message for f in findings if f.severity != "info")]
        summary["run_time_s"] = time.time() - self.started_at  # everything, the summary's own making included
        summary_error = self._write_summary(recorder, summary)
        judged = {f.message for f in findings}
        self._tell([], [w for w in summary["warnings"] if w not in judged])  # findings: the observer's end
        self.watcher.on_finish(result)
        if summary_error is not None:
            raise summary_error from None
        return result

    @staticmethod
    def _write_summary(recorder: RunRecorder, summary: dict[str, Any]) -> OutputError | None:
        """Write summary.json; if it cannot be written (a full disk), return the error the run ends with,
        the in-memory summary marked failed with it. When another failure is already ending the run, that
        one stays the run's error and this one becomes a warning."""
        try:
            recorder.write_summary(summary)
        except OutputError as exc:
            if summary["status"] == "complete" or recorder.failed:
                summary["status"], summary["error"] = "failed", str(exc)
                return exc
            summary["warnings"].append(str(exc))
        return None
