"""``--multi-model processes``: one worker process per model, fed through shared memory.

The loop's process reads and decodes each batch once and copies it into one uint8 tensor in shared memory
(``share_memory_()``), which every worker was handed once, at its start: per step a worker receives only the
step number and the frame count, a few bytes, never the frames. Each worker builds and warms up its own model
(the seed's sessions could not cross processes either; torch's runtime and the weights are then in memory
once per process, which ``summary.models[*].process.peak_rss_mb`` shows), binds its own cores when
``--core-bind`` is given, and answers each step with its stage times. A worker that raises, or dies (a
SIGKILL, the OOM killer), ends the run with one line naming its model; every row written before stays.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.multiprocessing as mp

from framescope.config import ModelConfig, RunConfig
from framescope.errors import FramescopeError
from framescope.instrument import Clock
from framescope.pipeline._multi import ModelTiming

START_TIMEOUT_S = 600.0
"""How long a worker may take to import torch, build and warm up its model."""
POLL_S = 0.2


class ModelRunError(FramescopeError):
    """A model failed during the run (it raised, or its worker process died): the run ends with this one line
    naming the model, exit code 1 (a run that started and failed; its rows are on disk)."""

    exit_code = 1


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM), MiB; None where /proc is not there."""
    with contextlib.suppress(OSError, ValueError):
        for line in open("/proc/self/status", encoding="ascii"):  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


@dataclass(frozen=True)
class WorkerSpec:
    config: RunConfig
    model: ModelConfig
    cores: tuple[int, ...] | None
    """Cores this worker binds to (None: the parent's affinity)."""
    torch_threads: int


def _worker_main(spec: WorkerSpec, shared: torch.Tensor, inbox: Any, outbox: Any) -> None:
    """A worker process: bind, build, warm up, then run each step it is told to on the shared batch."""
    step = -1
    try:
        if spec.cores is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, spec.cores)
        torch.set_num_threads(spec.torch_threads)
        from framescope._malloc import apply_malloc
        from framescope._multi import build_work

        apply_malloc(spec.config.malloc)  # the worker's own allocator, as the run's

        built = build_work(
            spec.config, spec.model, time.monotonic, warm_up_batch=shared, threads=spec.torch_threads
        )
        outbox.put(("ready", {**built.info, "pid": os.getpid()}))
        while (message := inbox.get()) is not None:
            step, count = message
            timing = built.work(shared[:count])
            outbox.put(("done", step, timing.samples, timing.start_s, timing.end_s))
        outbox.put(("bye", {"pid": os.getpid(), "peak_rss_mb": peak_rss_mb()}))
    except BaseException as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
        outbox.put(("error", f"{type(exc).__name__}: {exc}{at}"))
        raise SystemExit(1) from None


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        import signal

        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessStrategy:
    """One worker process per model (see the module docstring). ``clock`` is the run's clock: workers time
    with ``time.monotonic`` (one clock for every process on Linux), mapped onto it at each dispatch."""

    name = "processes"

    def __init__(self, specs: Sequence[WorkerSpec], batch_shape: tuple[int, ...], clock: Clock) -> None:
        self.specs = {s.model.name: s for s in specs}
        self.clock = clock
        self.context = mp.get_context("spawn")  # fork after torch's threads started is not safe
        self.shared = torch.zeros(batch_shape, dtype=torch.uint8).share_memory_()
        self.count = 0
        self._handed: Any = None
        self.closed = False
        self.where = "in the solo phase"
        """Where the run is, for an error: the loop's phase sets it (``at step 3``)."""
        self.step = 0
        self.processes: dict[str, Any] = {}
        self.inboxes: dict[str, Any] = {}
        self.outboxes: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, dict[str, Any]] = {}
        self.message_bytes = len(pickle.dumps((0, batch_shape[0])))
        """What a worker is sent per step (the step and the frame count): the frames stay in shared memory."""

    @property
    def shared_bytes(self) -> int:
        return self.shared.numel() * self.shared.element_size()

    def start(self) -> None:
        for name, spec in self.specs.items():
            inbox, outbox = self.context.Queue(), self.context.Queue()
            process = self.context.Process(
                target=_worker_main,
                args=(spec, self.shared, inbox, outbox),
                name=f"framescope-{name}",
                daemon=True,
            )
            process.start()
            self.processes[name], self.inboxes[name], self.outboxes[name] = process, inbox, outbox
        for name in self.specs:
            message = self._receive(name, START_TIMEOUT_S, "while starting")
            if message[0] != "ready":
                raise ModelRunError(f"model {name}'s process sent {message[0]!r} while starting.")
            self.info[name] = message[1]

    def handoff(self, batch: torch.Tensor) -> float:
        """Copy the batch into shared memory (every worker sees it there); returns the seconds it took."""
        start = self.clock()
        if tuple(batch.shape[1:]) != tuple(self.shared.shape[1:]) or len(batch) > len(self.shared):
            raise FramescopeError(
                f"a batch of shape {tuple(batch.shape)} does not fit the shared buffer "
                f"{tuple(self.shared.shape)}: --multi-model processes needs frames of one size; pass "
                "--decode-size WxH."
            )
        self.shared[: len(batch)].copy_(batch)
        self.count, self._handed = len(batch), batch
        return self.clock() - start

    def _receive(self, name: str, timeout_s: float, where: str) -> tuple[Any, ...]:
        waited = 0.0
        while True:
            try:
                message: tuple[Any, ...] = self.outboxes[name].get(timeout=POLL_S)
            except queue.Empty:
                waited += POLL_S
                process = self.processes[name]
                if not process.is_alive():
                    raise ModelRunError(
                        f"model {name}'s worker process {_death(process)} {where}; the rows written before "
                        f"are kept. Run it alone (--model-name {name}) to see its own error, or check the "
                        "machine's memory (dmesg)."
                    ) from None
                if waited >= timeout_s:
                    raise ModelRunError(
                        f"model {name}'s worker process gave no answer for {timeout_s:.0f} s {where}."
                    ) from None
                continue
            if message[0] == "error":
                raise ModelRunError(
                    f"model {name}'s worker process failed {where}: {message[1]}; the rows written before "
                    "are kept."
                )
            return message

    def run(self, batch: torch.Tensor, names: Sequence[str]) -> dict[str, ModelTiming]:
        if batch is not self._handed:
            self.handoff(batch)  # the solo phase hands its batches over here; the loop did it for the rest
        step, self.step = self.step, self.step + 1
        offset = self.clock() - time.monotonic()
        for name in names:
            self.inboxes[name].put((step, self.count))
        results: dict[str, ModelTiming] = {}
        for name in names:
            message = self._receive(name, START_TIMEOUT_S, self.where)
            _, _, samples, start, end = message
            results[name] = ModelTiming(samples, start + offset, end + offset)
        return results

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for name, process in self.processes.items():
            if process.is_alive():
                with contextlib.suppress(Exception):
                    self.inboxes[name].put(None)
        for name, process in self.processes.items():
            with contextlib.suppress(Exception):  # a dead worker has no last word
                message = self.outboxes[name].get(timeout=10.0 if process.is_alive() else 1.0)
                if message[0] == "bye":
                    self.ended[name] = message[1]
            process.join(timeout=10.0)
            if process.is_alive():
                process.kill()
                process.join()
        for box in (*self.inboxes.values(), *self.outboxes.values()):
            box.close()
            box.join_thread()


def split_cores(cores: Sequence[int] | None, count: int) -> list[tuple[int, ...] | None]:
    """``--core-bind`` cores dealt out to ``count`` workers, as evenly as they go (a worker shares a core when
    there are fewer cores than workers); None for each when nothing was bound."""
    if not cores:
        return [None] * count
    if len(cores) < count:
        return [(cores[i % len(cores)],) for i in range(count)]
    return [tuple(cores[i::count]) for i in range(count)]


__all__ = ["ModelRunError", "ProcessStrategy", "WorkerSpec", "peak_rss_mb", "split_cores"]
