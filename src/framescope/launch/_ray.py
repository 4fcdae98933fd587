"""Workers as Ray tasks across a cluster's nodes: the same interface as :class:`LocalLauncher`.

Each worker is one Ray task asking for ``num_cpus`` (its core count) and ``num_gpus`` (1 when it has a GPU),
placed by Ray: with several workers on several nodes, a placement group (``SPREAD`` by default, ``PACK`` with
``placement: pack`` in the launch file) holds one bundle per worker. The task runs :func:`framescope.run`
into a temporary directory on its own node (no shared file system is assumed) and returns that run directory
as a tar archive when it ends, which the launcher unpacks into ``workers/NAME/``.

While it runs, a thread in the task sends the run directory's new bytes (new CSV lines, a rewritten
summary) every :data:`STREAM_EVERY_S` to a small coordinator actor on the head node, which the
launcher drains; a node that dies loses at most those seconds of rows, and its worker is reported ``lost``
with the rows it streamed (``load_run`` summarises them). The same actor is the barrier (each worker says
``ready`` after its set-up and waits until the launcher opens it) and the stop switch: Ctrl-C or SIGTERM to
the launcher sets it, and each worker ends its run as a run ends on Ctrl-C, then sends its directory back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import platform
import shutil
import signal
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from framescope.errors import ConfigError, Terminated
from framescope.launch._local import BARRIER_TIMEOUT_S, STOP_GRACE_S, WorkerState
from framescope.launch._spec import LaunchSpec, Worker

STREAM_EVERY_S = 1.0
"""How often a running worker sends its new rows to the launcher: what a lost node can lose at most."""
POLL_S = 0.5
STREAM_MAX_BYTES = 8 << 20
"""Files larger than this (traces) are not streamed, only sent back with the finished run directory."""
PLACEMENT_TIMEOUT_S = 120.0
INSTALL_HINT = (
    "--backend ray needs Ray, which is not installed here; install it with: pip install framescope[ray]"
)
PLACEMENTS = {"spread": "SPREAD", "pack": "PACK"}


def import_ray() -> ModuleType:
    """Ray, or a :class:`ConfigError` naming the fix."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class ClusterInfo:
    """What placement needs to know about the cluster the launch runs on."""

    nodes: int
    min_cpus: int
    """The smallest alive node's CPUs: ``cores: auto`` splits these between the workers."""
    max_cpus: int
    max_gpus: int


def cluster_info() -> ClusterInfo:
    ray = import_ray()
    alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = [int(r.get("CPU", 0)) for r in alive] or [1]
    return ClusterInfo(
        nodes=len(alive),
        min_cpus=max(1, min(cpus)),
        max_cpus=max(cpus),
        max_gpus=max([int(r.get("GPU", 0)) for r in alive] or [0]),
    )


@contextlib.contextmanager
def connect(cluster: str | None) -> Iterator[ClusterInfo]:
    """Connected to ``cluster`` (``ray://HEAD:10001``, ``HOST:6379``, ``auto``; None: ``RAY_ADDRESS``, or a
    Ray started on this machine for the launch) while the block runs; a connection already made is used and
    left open."""
    ray = import_ray()
    if ray.is_initialized():
        yield cluster_info()
        return
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if cluster is None and not os.environ.get("RAY_ADDRESS"):
        options.update(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    restore = _cluster_messages_to_stderr()
    try:
        ray.init(address=cluster, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        restore()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"could not connect to the Ray cluster {cluster or os.environ.get('RAY_ADDRESS')!r} ({first}); "
            "check --cluster (ray://HEAD:10001, HEAD:6379 or auto) and that the cluster is up (ray status)."
        ) from None
    finally:
        if in_main:  # ray.init makes SIGTERM exit at once; the launch stops its workers first
            signal.signal(signal.SIGTERM, previous)
    try:
        yield cluster_info()
    finally:
        ray.shutdown()
        restore()


def _cluster_messages_to_stderr() -> Callable[[], None]:
    """Ray prints the cluster's error messages ("the node ... has been marked dead") on the driver's stdout,
    where ``--json`` prints the summary; send them to stderr. Returns what undoes it."""
    try:
        from ray._private import worker as ray_worker_module

        original = ray_worker_module.print_to_stdstream
    except (ImportError, AttributeError):  # another Ray: its messages stay where it prints them
        return lambda: None

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    ray_worker_module.print_to_stdstream = to_stderr

    def restore() -> None:
        ray_worker_module.print_to_stdstream = original

    return restore


# --- on the worker's node -------------------------------------------------------------------------------


class Coordinator:
    """A Ray actor on the head node: the barrier, the stop switch, and the mailbox of workers' events and
    streamed bytes, drained by the launcher."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.go = False
        self.stop: int | None = None

    def tell(self, name: str, kind: str, payload: Any) -> tuple[bool, int | None]:
        self.events.append((name, kind, payload))
        return self.go, self.stop

    def poll(self) -> tuple[bool, int | None]:
        return self.go, self.stop

    def drain(self) -> list[tuple[str, str, Any]]:
        events, self.events = self.events, []
        return events

    def open(self) -> None:
        self.go = True

    def halt(self, signum: int) -> None:
        self.stop, self.go = signum, True


class _Streamer:
    """Sends the run directory's new bytes to the coordinator every :data:`STREAM_EVERY_S`: appended bytes
    for the metrics CSV (whole lines only), whole files for anything else that changed."""

    def __init__(self, name: str, run_dir: Path, coordinator: Any) -> None:
        self.name, self.run_dir, self.coordinator = name, run_dir, coordinator
        self.sent: dict[str, tuple[int, int]] = {}
        self.progress: tuple[int, float | None] | None = None
        self.stop: int | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"framescope-stream-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        with contextlib.suppress(Exception):  # the head gone: the run directory still goes back as the result
            self.push()  # the last rows, before the task returns

    def _loop(self) -> None:
        while not self.done.wait(STREAM_EVERY_S):
            with contextlib.suppress(Exception):  # a missed push is sent with the next one
                self.push()

    def chunks(self) -> list[tuple[str, int, bytes]]:
        found: list[tuple[str, int, bytes]] = []
        if not self.run_dir.is_dir():
            return found
        for path in sorted(p for p in self.run_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(self.run_dir).as_posix()
            stat = path.stat()
            if stat.st_size > STREAM_MAX_BYTES or self.sent.get(rel) == (stat.st_size, stat.st_mtime_ns):
                continue
            offset = self.sent.get(rel, (0, 0))[0] if rel.endswith(".csv") else 0
            with path.open("rb") as file:
                file.seek(offset if offset <= stat.st_size else 0)
                data = file.read()
            if rel.endswith(".csv"):
                if offset > stat.st_size:
                    offset = 0
                data = data[: data.rfind(b"\n") + 1]  # whole rows only; the rest goes next time
                if not data:
                    continue
                self.sent[rel] = (offset + len(data), stat.st_mtime_ns)
            else:
                self.sent[rel] = (stat.st_size, stat.st_mtime_ns)
            found.append((rel, offset, data))
        return found

    def push(self) -> None:
        import ray

        chunks = self.chunks()
        if chunks:
            self.coordinator.tell.remote(self.name, "files", chunks)
        if self.progress is not None:
            self.coordinator.tell.remote(self.name, "step", self.progress)
        _, self.stop = ray.get(self.coordinator.poll.remote())


def _stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _archive(run_dir: Path) -> bytes | None:
    if not run_dir.is_dir():
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(run_dir, arcname=".")
    return buffer.getvalue()


def remote_worker(worker: Worker, coordinator: Any) -> dict[str, Any]:
    """The body of one worker's Ray task: run it into a temporary directory on this node, streaming its new
    rows, and return its status and its run directory (a tar.gz archive)."""
    import ray

    from framescope._observer import RunObserver
    from framescope._run import run
    from framescope.errors import FramescopeError
    from framescope.instrument.spans import set_nvtx_prefix

    set_nvtx_prefix(f"{worker.name}/")
    node_id = ray.get_runtime_context().get_node_id()
    coordinator.tell.remote(worker.name, "node", {"node_id": node_id, "host": platform.node()})
    scratch = Path(tempfile.mkdtemp(prefix=f"framescope-{worker.name}-"))
    streamer = _Streamer(worker.name, scratch / worker.name, coordinator)

    class Report(RunObserver):
        def __init__(self) -> None:
            self.frames, self.ms, self.steps = 0, 0.0, 0

        def on_start(self, info: Any) -> None:
            coordinator.tell.remote(worker.name, "ready", None)
            deadline = time.monotonic() + BARRIER_TIMEOUT_S
            while True:
                go, stop = ray.get(coordinator.poll.remote())
                if stop is not None:
                    raise _stop_exception(stop)
                if go:
                    break
                if time.monotonic() > deadline:
                    coordinator.tell.remote(
                        worker.name, "warning", "the others were not ready in time: started alone"
                    )
                    break
                time.sleep(0.1)
            coordinator.tell.remote(worker.name, "running", None)

        def on_step(self, row: Any) -> None:
            self.steps += 1
            if not row.warmup and row.total_step_latency_ms > 0:
                self.frames += row.frames
                self.ms += row.total_step_latency_ms
            streamer.progress = (self.steps, self.frames / (self.ms / 1000.0) if self.ms else None)
            if streamer.stop is not None:  # the launcher was stopped: end as a run ends on Ctrl-C
                raise _stop_exception(streamer.stop)

    streamer.start()
    status, error = "failed", None
    try:
        result = run(worker.run_config(scratch), observer=Report())
        status, error = result.status, result.summary.get("error")
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = "stopped by SIGTERM" if isinstance(exc, Terminated) else "stopped by the user (Ctrl-C)"
    except FramescopeError as exc:
        error = str(exc)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        streamer.close()
    try:
        return {"status": status, "error": error, "archive": _archive(scratch / worker.name)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- on the launching machine ---------------------------------------------------------------------------


def ray_worker(worker: Worker) -> tuple[Worker, float, int]:
    """The worker as it runs on a node, with its resource request: its core count becomes ``num_cpus`` (and
    its torch threads, unless it sets ``torch_threads``), never core ids, which mean nothing on another
    machine; a GPU becomes ``num_gpus=1`` and Ray chooses which (CUDA_VISIBLE_DEVICES is Ray's)."""
    cpus = len(worker.cores) if worker.cores else 1
    config = dict(worker.config)
    config.setdefault("torch_threads", cpus)
    return (
        replace(worker, config=config, cores=None, gpu=None),
        float(cpus),
        1 if worker.gpu is not None else 0,
    )


def ray_notes(spec: LaunchSpec, cluster: ClusterInfo) -> list[str]:
    """What each worker asks of the cluster, in place of the local placement's notes about shared cores
    (core ids mean nothing on Ray)."""
    notes = [f"ray: {cluster.nodes} node(s); workers spread over them" if spec.placement == "spread"
             else f"ray: {cluster.nodes} node(s); workers packed onto as few as fit"]  # fmt: skip
    for worker in spec.workers:
        _, cpus, gpus = ray_worker(worker)
        notes.append(f"ray: {worker.name} asks for num_cpus={cpus:g}" + (", num_gpus=1" if gpus else ""))
    return notes


class RayLauncher:
    """Start ``workers`` as Ray tasks, gather their run directories under ``output_dir``, return their states.
    Connects with :func:`connect` first (``launch`` does)."""

    def __init__(
        self,
        workers: list[Worker],
        output_dir: Path,
        *,
        on_change: Callable[[dict[str, WorkerState]], None] | None = None,
        placement: str = "spread",
    ) -> None:
        self.workers, self.output_dir = workers, output_dir
        self.on_change = on_change or (lambda states: None)
        self.placement = placement
        self.states = {w.name: WorkerState(w.name) for w in workers}
        self.stopping: int | None = None
        self._node_names: dict[str, str] = {}

    def stop(self, signum: int) -> None:
        """Ask every worker to end its run as on ``signum`` (SIGINT or SIGTERM) and send it back."""
        self.stopping = signum

    def _head(self) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        heads = [
            n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n["Resources"]
        ]
        # on the head, not on a node that may die with its worker (a soft affinity let Ray put it anywhere)
        strategy = NodeAffinitySchedulingStrategy(heads[0], soft=False) if heads else "DEFAULT"
        return ray.remote(Coordinator).options(num_cpus=0, scheduling_strategy=strategy).remote()

    def _check_fits(self, asks: list[tuple[Worker, float, int]]) -> None:
        import ray

        alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        total, asked = sum(r.get("CPU", 0) for r in alive), sum(cpus for _, cpus, _ in asks)
        if asked > total:
            raise ConfigError(
                f"the {len(asks)} workers ask for {asked:g} CPU(s) at once and the cluster has {total:g}; "
                "run fewer workers or give them fewer cores (they run together)."
            )
        for worker, cpus, gpus in asks:
            if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in alive):
                biggest = max((int(r.get("CPU", 0)) for r in alive), default=0)
                raise ConfigError(
                    f"worker {worker.name!r} asks for {cpus:g} CPU(s){' and a GPU' if gpus else ''}, "
                    f"which no node of the cluster has (the largest has {biggest} CPU(s)); give it fewer "
                    "cores (cores: auto fits the smallest node)."
                )

    def _strategies(self, asks: list[tuple[Worker, float, int]]) -> tuple[list[Any], Any]:
        """One scheduling strategy per worker and the placement group to remove at the end (or None)."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if len(asks) < 2:
            return ["DEFAULT"], None
        # a group even on one node: the workers must all run at once (they meet at the barrier), and a
        # group is placed whole or not at all, where loose tasks would wait for each other's CPUs forever
        bundles = [{"CPU": cpus, **({"GPU": float(gpus)} if gpus else {})} for _, cpus, gpus in asks]
        group = placement_group(bundles, strategy=PLACEMENTS[self.placement], name="framescope-launch")
        ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
        if not ready:
            ray.util.remove_placement_group(group)
            raise ConfigError(
                f"the cluster could not place the {len(asks)} workers ({bundles}) within "
                f"{PLACEMENT_TIMEOUT_S:.0f} s; check `ray status` for free CPUs and GPUs, or run fewer "
                "workers."
            )
        return [
            PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i) for i in range(len(asks))
        ], group

    def run(self) -> dict[str, WorkerState]:
        import ray

        asks = [ray_worker(w) for w in self.workers]
        self._check_fits(asks)
        coordinator = self._head()
        strategies, group = self._strategies(asks)
        task = ray.remote(remote_worker)
        pending: dict[Any, str] = {}
        for (worker, cpus, gpus), strategy in zip(asks, strategies, strict=True):
            ref = task.options(
                num_cpus=cpus,
                num_gpus=gpus,
                max_retries=0,
                retry_exceptions=False,
                scheduling_strategy=strategy,
                name=f"framescope:{worker.name}",
            ).remote(worker, coordinator)
            pending[ref] = worker.name
        self.output_dir.mkdir(parents=True, exist_ok=True)
        halted, opened, deadline = False, False, None
        try:
            while pending:
                try:
                    done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
                    self._apply(coordinator)
                    for ref in done:
                        self._finish(pending.pop(ref), ref)
                    if not opened and all(s.state != "starting" for s in self.states.values()):
                        opened = True  # every worker is ready or gone: the measured part starts together
                        coordinator.open.remote()
                    if self.stopping is not None and not halted:
                        halted, deadline = True, time.monotonic() + STOP_GRACE_S
                        coordinator.halt.remote(self.stopping)
                    if deadline is not None and time.monotonic() > deadline:
                        for ref in pending:
                            ray.cancel(ref, force=True)
                        deadline = None
                except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM reached the launcher: pass it on, wait
                    self.stop(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if group is not None:
                ray.util.remove_placement_group(group)
            with contextlib.suppress(Exception):
                ray.kill(coordinator)
        return self.states

    def _apply(self, coordinator: Any) -> None:
        import ray

        try:
            events = ray.get(coordinator.drain.remote(), timeout=30)
        except ray.exceptions.RayError:  # the head is gone; the workers' tasks fail next
            return
        for name, kind, payload in events:
            state = self.states[name]
            if state.progress(kind, payload):
                continue
            if kind == "node":
                state.node_id = payload["node_id"]
                state.node = self._node_name(payload["node_id"]) or payload["host"]
            elif kind == "ready":
                state.state, state.run_dir = "ready", self.output_dir / name
            elif kind == "files":
                _write_chunks(self.output_dir / name, payload)
        if events:
            self.on_change(self.states)

    def _node_name(self, node_id: str) -> str | None:
        import ray

        if node_id not in self._node_names:
            for node in ray.nodes():
                self._node_names[node["NodeID"]] = node.get("NodeName") or node.get("NodeManagerAddress")
        return self._node_names.get(node_id)

    def _finish(self, name: str, ref: Any) -> None:
        import ray

        state = self.states[name]
        run_dir = self.output_dir / name
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            state.state, state.error = (
                "interrupted",
                "stopped: the worker did not end in time and was cancelled",
            )
        except ray.exceptions.RayTaskError as exc:
            state.state, state.error = "failed", _first_line(exc)
        except ray.exceptions.RayError as exc:  # its node or its process died: the streamed rows are kept
            state.state = "interrupted" if self.stopping is not None else "lost"
            state.error = _first_line(exc)
        else:
            state.state, state.error = result["status"], result["error"]
            if result["archive"] is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
                with tarfile.open(fileobj=io.BytesIO(result["archive"]), mode="r:gz") as tar:
                    tar.extractall(run_dir, filter="data")
        state.exit_code = 0 if state.state == "complete" else 1
        state.run_dir = run_dir if run_dir.is_dir() else None
        self.on_change(self.states)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _write_chunks(run_dir: Path, chunks: list[tuple[str, int, bytes]]) -> None:
    for rel, offset, data in chunks:
        path = run_dir / rel
        if path.resolve().is_relative_to(run_dir.resolve()) is False:
            continue  # a path that leaves the run directory is not written
        path.parent.mkdir(parents=True, exist_ok=True)
        if offset == 0:
            path.write_bytes(data)
            continue
        with path.open("r+b" if path.exists() else "wb") as file:
            file.seek(offset)
            file.write(data)
            file.truncate()
