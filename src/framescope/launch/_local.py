"""Workers as local processes: started together, held at a barrier after their set-up, followed while they
run, stopped together.

Each worker is a fresh (spawned) Python process running :func:`framescope.run` on its own configuration, so it
writes an ordinary run directory. It reports to the launcher through a queue: ``ready`` once its model is
built and warmed up, a ``step`` now and then, ``done`` with its status. The launcher opens the barrier (an
event) when every worker is ready or gone, so no worker's warm-up or compilation overlaps another's measured
steps. Ctrl-C or SIGTERM to the launcher is passed to every worker, each of which ends its run the way a run
ends on Ctrl-C (rows and summary kept).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

from framescope.errors import Terminated
from framescope.launch._spec import Worker

BARRIER_TIMEOUT_S = 1800.0
"""How long a ready worker waits for the others' set-up before it starts alone (a warning says so)."""
STOP_GRACE_S = 30.0
"""How long a stopped worker may take to write its summary before it is killed."""
STEP_EVERY_S = 0.5
PR_SET_PDEATHSIG = 1
FLUSH_S = 5.0


@dataclass
class WorkerState:
    name: str
    state: str = "starting"
    """``starting``, ``ready``, ``running``, then ``complete``, ``failed``, ``interrupted`` or ``lost``."""
    steps: int = 0
    fps: float | None = None
    error: str | None = None
    exit_code: int | None = None
    run_dir: Path | None = None
    node: str | None = None
    """Where it ran: this machine's name locally, the Ray node's name (its IP unless named) on Ray."""
    node_id: str | None = None
    """The Ray node's ID (None locally)."""
    recent: list[tuple[int, float]] = field(default_factory=list, repr=False)

    def progress(self, kind: str, payload: Any) -> bool:
        """Apply a progress event every launcher receives (``running``, ``step``, ``warning``); False for
        any other kind, which the launcher handles itself."""
        if kind == "running":
            self.state = "running"
        elif kind == "step":
            self.steps, self.fps = payload
        elif kind == "warning":
            self.error = payload
        else:
            return False
        return True


def _die_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when the launcher dies (killed with SIGKILL, say), so no worker
    outlives its launch on an endless input; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the launcher died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def _flush(events: Any) -> None:
    """Let the queue's feeder thread hand the last events (``done``) to the launcher before the worker exits:
    a process that exits first loses them. Bounded, so a launcher that is gone cannot keep a finished worker
    from exiting."""
    events.close()
    flusher = threading.Thread(target=events.join_thread, daemon=True)
    flusher.start()
    flusher.join(FLUSH_S)
    if flusher.is_alive():
        events.cancel_join_thread()


def _worker_main(worker: Worker, output_dir: str, events: Any, go: Event, quiet: bool) -> None:
    """The body of one worker process."""
    from framescope._observer import RunObserver
    from framescope._run import run
    from framescope.errors import FramescopeError, Terminated
    from framescope.instrument.spans import set_nvtx_prefix

    set_nvtx_prefix(f"{worker.name}/")
    _die_with_parent()

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)

    class Report(RunObserver):
        def __init__(self) -> None:
            self.last = 0.0
            self.frames = 0
            self.ms = 0.0
            self.steps = 0

        def on_start(self, info: Any) -> None:
            events.put(("ready", worker.name, str(info.run_dir)))
            if not go.wait(BARRIER_TIMEOUT_S):
                events.put(("warning", worker.name, "the others were not ready in time: started alone"))
            events.put(("running", worker.name, None))

        def on_step(self, row: Any) -> None:
            self.steps += 1
            if not row.warmup and row.total_step_latency_ms > 0:
                self.frames += row.frames
                self.ms += row.total_step_latency_ms
            now = time.monotonic()
            if now - self.last >= STEP_EVERY_S:
                self.last = now
                fps = self.frames / (self.ms / 1000.0) if self.ms else None
                events.put(("step", worker.name, (self.steps, fps)))

    if quiet:
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
    try:
        result = run(worker.run_config(Path(output_dir)), observer=Report())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run wrote its summary on the way out
        events.put(("done", worker.name, ("interrupted", "stopped", None)))
        _flush(events)
        raise SystemExit(130) from None
    except FramescopeError as exc:
        events.put(("done", worker.name, ("failed", str(exc), None)))
        _flush(events)
        raise SystemExit(exc.exit_code) from None
    except BaseException as exc:
        events.put(("done", worker.name, ("failed", f"{type(exc).__name__}: {exc}", None)))
        _flush(events)
        raise SystemExit(1) from None
    events.put(("done", worker.name, (result.status, result.summary.get("error"), str(result.run_dir))))
    _flush(events)
    raise SystemExit(0 if result.status == "complete" else 1)


class LocalLauncher:
    """Start ``workers`` as processes writing under ``output_dir``, wait for them, return their states."""

    def __init__(
        self,
        workers: list[Worker],
        output_dir: Path,
        *,
        on_change: Callable[[dict[str, WorkerState]], None] | None = None,
        quiet: bool = True,
    ) -> None:
        self.workers, self.output_dir = workers, output_dir
        self.on_change = on_change or (lambda states: None)
        self.quiet = quiet
        self.context = multiprocessing.get_context("spawn")
        self.states = {w.name: WorkerState(w.name) for w in workers}
        self.stopping: int | None = None

    def _start(self, events: Any, go: Event) -> dict[str, Any]:
        processes = {}
        for worker in self.workers:
            process = self.context.Process(
                target=_worker_main,
                args=(worker, str(self.output_dir), events, go, self.quiet),
                name=f"framescope-worker-{worker.name}",
                daemon=False,
            )
            saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            if worker.gpu is not None:  # the child reads its environment when it starts
                os.environ["CUDA_VISIBLE_DEVICES"] = str(worker.gpu)
            try:
                process.start()
            finally:
                if worker.gpu is not None:
                    if saved is None:
                        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                    else:
                        os.environ["CUDA_VISIBLE_DEVICES"] = saved
            processes[worker.name] = process
        return processes

    def stop(self, signum: int) -> None:
        """Pass ``signum`` (SIGINT or SIGTERM) to every worker still running."""
        self.stopping = signum

    def run(self) -> dict[str, WorkerState]:
        events = self.context.Queue()
        go = self.context.Event()
        processes = self._start(events, go)
        self._forwarded = False
        self._deadline: float | None = None
        try:
            while True:
                try:
                    if not self._step(events, go, processes):
                        break
                except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM reached the launcher: pass it on, wait
                    self.stop(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        finally:
            for process in processes.values():
                process.join(timeout=5)
            self._drain(events)
        return self.states

    def _step(self, events: Any, go: Event, processes: dict[str, Any]) -> bool:
        """Handle one event or one poll; False once every worker has exited."""
        try:
            self._handle(events.get(timeout=0.2))
            return True
        except queue.Empty:
            pass
        alive = {name for name, p in processes.items() if p.is_alive()}
        for name, process in processes.items():
            state = self.states[name]
            if name not in alive and state.exit_code is None:
                state.exit_code = process.exitcode
                self._drain(events)
                if state.state not in ("complete", "failed", "interrupted"):
                    code = process.exitcode or 0
                    if self.stopping is not None:
                        state.state = "interrupted"
                    else:
                        state.state = "lost" if code < 0 else "failed"
                    state.error = state.error or (
                        f"killed by signal {-code}"
                        if code < 0
                        else f"exited with code {code} before it finished"
                    )
                self.on_change(self.states)
        if not go.is_set() and all(self.states[n].state != "starting" or n not in alive for n in processes):
            go.set()  # every worker is ready or gone: the measured part starts together
        if self.stopping is not None and not self._forwarded:
            self._forwarded = True
            self._deadline = time.monotonic() + STOP_GRACE_S
            go.set()
            for name in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(processes[name].pid, self.stopping)
        if self._deadline is not None and time.monotonic() > self._deadline:
            for name in alive:
                processes[name].kill()
        return bool(alive)

    def _drain(self, events: Any) -> None:
        while True:
            try:
                self._handle(events.get_nowait())
            except (queue.Empty, OSError, ValueError):
                return

    def _handle(self, event: tuple[str, str, Any]) -> None:
        kind, name, payload = event
        state = self.states[name]
        if state.progress(kind, payload):
            pass  # running, step, warning: as every launcher applies them
        elif kind == "ready":
            state.state, state.run_dir = "ready", Path(payload)
        elif kind == "done":
            status, error, run_dir = payload
            state.state, state.error = status, error
            if run_dir:
                state.run_dir = Path(run_dir)
        self.on_change(self.states)
