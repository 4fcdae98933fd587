"""``framescope launch``: a launch directory from a launch file.

```
LAUNCH_DIR/
  launch.yaml        the resolved launch: every worker's whole config, its cores and GPU, placement notes
  summary.json       workers (name, status, error, node, steady_fps, solo_fps, slowdown, run_dir), total_fps,
                     backend (local or ray)
  workers/NAME/      each worker's ordinary run directory (measured together)
  solo/NAME/         with --solo: each worker measured alone first, one after another
```
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from framescope.errors import ConfigError
from framescope.launch._local import LocalLauncher, WorkerState
from framescope.launch._spec import LaunchSpec, Worker

if TYPE_CHECKING:
    from framescope.launch._ray import RayLauncher

LAUNCH_FILE = "launch.yaml"
SUMMARY_FILE = "summary.json"
WORKERS_DIR = "workers"
SOLO_DIR = "solo"
NSYS_TRACE = "cuda,nvtx,osrt"


def launch_dir_for(output_dir: Path, name: str | None = None) -> Path:
    base = name or time.strftime("launch-%Y%m%d-%H%M%S")
    path, suffix = output_dir / base, 1
    while path.exists():
        suffix += 1
        path = output_dir / f"{base}-{suffix}"
    return path


def nsys_command(launch_dir: Path, argv: list[str]) -> list[str]:
    """The command that runs this launch under Nsight Systems, its report in the launch directory; a
    :class:`ConfigError` naming the fix when ``nsys`` is not on PATH."""
    nsys = shutil.which("nsys")
    if nsys is None:
        raise ConfigError(
            "--nsys needs NVIDIA Nsight Systems' `nsys` on PATH, and it is not; install Nsight Systems (it "
            "ships with the CUDA toolkit) or run without --nsys."
        )
    return [nsys, "profile", f"--trace={NSYS_TRACE}", "--force-overwrite=true",
            "-o", str(launch_dir / "launch"), *argv]  # fmt: skip


def _fps(run_dir: Path | None) -> tuple[float | None, dict[str, Any]]:
    if run_dir is None or not run_dir.is_dir():
        return None, {}
    try:
        from framescope.records import load_run

        result = load_run(run_dir)
    except Exception:  # a worker killed before it wrote anything readable
        return None, {}
    return result.summary.get("steady_fps"), result.summary


BACKENDS = ("local", "ray")


def run_workers(
    workers: list[Worker],
    output_dir: Path,
    on_change: Callable[[dict[str, WorkerState]], None] | None = None,
    *,
    backend: str = "local",
    placement: str = "spread",
) -> tuple[dict[str, WorkerState], int | None]:
    """Run ``workers`` together under ``output_dir`` with ``backend`` (``ray``: already connected, see
    ``launch``); their states and the signal that stopped them, if one did."""
    launcher: LocalLauncher | RayLauncher
    if backend == "ray":
        from framescope.launch._ray import RayLauncher

        launcher = RayLauncher(workers, output_dir, on_change=on_change, placement=placement)
    else:
        launcher = LocalLauncher(workers, output_dir, on_change=on_change)
    states = launcher.run()
    return states, launcher.stopping


def launch(
    spec: LaunchSpec,
    launch_dir: Path,
    *,
    solo: bool = False,
    on_change: Callable[[str, dict[str, WorkerState]], None] | None = None,
    command: list[str] | None = None,
    backend: str = "local",
    cluster: str | None = None,
) -> tuple[dict[str, Any], int | None]:
    """Run every worker of ``spec`` (alone first with ``solo``, then together) into ``launch_dir``; the
    aggregate summary (also written as summary.json) and the signal that stopped it, if one did.

    ``backend="ray"`` runs the workers as Ray tasks on ``cluster`` (see
    :func:`framescope.launch._ray.connect`; a connection already made is used) and gathers their run
    directories here."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} should be one of {', '.join(BACKENDS)}.")
    if backend == "ray":
        from framescope.launch._ray import connect

        with connect(cluster):
            return _launch(spec, launch_dir, solo=solo, on_change=on_change, command=command, backend="ray")
    return _launch(spec, launch_dir, solo=solo, on_change=on_change, command=command, backend="local")


def _launch(
    spec: LaunchSpec,
    launch_dir: Path,
    *,
    solo: bool,
    on_change: Callable[[str, dict[str, WorkerState]], None] | None,
    command: list[str] | None,
    backend: str,
) -> tuple[dict[str, Any], int | None]:
    launch_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**spec.as_dict(), "command": command, "backend": backend}
    (launch_dir / LAUNCH_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    tell = on_change or (lambda phase, states: None)
    solo_fps: dict[str, float | None] = {}
    stopped: int | None = None
    if solo:
        for worker in spec.workers:
            alone, stopped = run_workers(
                [worker], launch_dir / SOLO_DIR, lambda s: tell("solo", s), backend=backend
            )
            solo_fps[worker.name] = _fps(alone[worker.name].run_dir)[0]
            if stopped is not None:
                break
    states: dict[str, WorkerState] = {}
    if stopped is None:
        states, stopped = run_workers(
            spec.workers,
            launch_dir / WORKERS_DIR,
            lambda s: tell("together", s),
            backend=backend,
            placement=spec.placement,
        )
    summary = aggregate(spec, launch_dir, states, solo_fps if solo else None, stopped, backend=backend)
    (launch_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary, stopped


def aggregate(
    spec: LaunchSpec,
    launch_dir: Path,
    states: dict[str, WorkerState],
    solo_fps: dict[str, float | None] | None,
    stopped: int | None,
    *,
    backend: str = "local",
) -> dict[str, Any]:
    node = platform.node()
    workers: list[dict[str, Any]] = []
    for worker in spec.workers:
        state = states.get(worker.name) or WorkerState(worker.name, state="interrupted", error="not started")
        run_dir = state.run_dir or (launch_dir / WORKERS_DIR / worker.name)
        fps, summary = _fps(run_dir)
        solo = (solo_fps or {}).get(worker.name)
        workers.append(
            {
                "name": worker.name,
                "status": state.state if state.state != "running" else "interrupted",
                "error": state.error,
                "node": state.node or (node if backend == "local" else None),
                "node_id": state.node_id,
                "cores": list(worker.cores) if worker.cores is not None else None,
                "gpu": worker.gpu,
                "model": (worker.config.get("model") or {}).get("name"),
                "steady_fps": fps,
                "solo_fps": solo,
                "slowdown": solo / fps if solo and fps else None,
                "cpu_cores_used": (summary.get("cpu") or {}).get("ours"),
                "run_dir": str(run_dir.relative_to(launch_dir)) if run_dir.is_dir() else None,
            }
        )
    total = sum(float(w["steady_fps"] or 0.0) for w in workers)
    return {
        "workers": workers,
        "total_fps": total,
        "solo_total_fps": sum(v or 0.0 for v in solo_fps.values()) if solo_fps else None,
        "notes": spec.notes,
        "interrupted": stopped is not None,
        "backend": backend,
    }
