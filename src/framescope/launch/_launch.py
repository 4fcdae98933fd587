"""``framescope launch``: a launch directory from a launch file.

```
LAUNCH_DIR/
  launch.yaml        the resolved launch: every worker's whole config, its cores and GPU, placement notes
  summary.json       workers (name, status, error, node, steady_fps, solo_fps, slowdown, run_dir), total_fps
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
from typing import Any

import yaml

from framescope.errors import ConfigError
from framescope.launch._local import LocalLauncher, WorkerState
from framescope.launch._spec import LaunchSpec, Worker

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


def run_workers(
    workers: list[Worker], output_dir: Path, on_change: Callable[[dict[str, WorkerState]], None] | None = None
) -> tuple[dict[str, WorkerState], int | None]:
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
) -> tuple[dict[str, Any], int | None]:
    """Run every worker of ``spec`` (alone first with ``solo``, then together) into ``launch_dir``; the
    aggregate summary (also written as summary.json) and the signal that stopped it, if one did."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**spec.as_dict(), "command": command}
    (launch_dir / LAUNCH_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    tell = on_change or (lambda phase, states: None)
    solo_fps: dict[str, float | None] = {}
    stopped: int | None = None
    if solo:
        for worker in spec.workers:
            alone, stopped = run_workers([worker], launch_dir / SOLO_DIR, lambda s: tell("solo", s))
            solo_fps[worker.name] = _fps(alone[worker.name].run_dir)[0]
            if stopped is not None:
                break
    states: dict[str, WorkerState] = {}
    if stopped is None:
        states, stopped = run_workers(spec.workers, launch_dir / WORKERS_DIR, lambda s: tell("together", s))
    summary = aggregate(spec, launch_dir, states, solo_fps if solo else None, stopped)
    (launch_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary, stopped


def aggregate(
    spec: LaunchSpec,
    launch_dir: Path,
    states: dict[str, WorkerState],
    solo_fps: dict[str, float | None] | None,
    stopped: int | None,
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
                "node": node,
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
        "backend": "local",
    }
