"""``framescope launch CONFIG.yaml``: many workers from one launch file, started together, each writing its
own run directory under one launch directory.

Exit codes: 0 every worker complete; 1 a worker failed or was lost (the others still ran); 2 bad input (the
launch file, placement, --nsys without nsys); 130/143 stopped with Ctrl-C/SIGTERM (every worker keeps its
rows and summary).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from framescope.errors import ConfigError

if TYPE_CHECKING:
    from framescope.launch import LaunchSpec

STATE_STYLE = {"complete": "green", "failed": "bold red", "lost": "bold red", "interrupted": "yellow"}


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", type=Path, metavar="CONFIG.yaml", help="the launch file (workers and defaults)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("runs"), metavar="DIR", help="where the launch directory goes"
    )
    parser.add_argument(
        "--name", metavar="NAME", help="the launch directory's name (default: launch-DATE-TIME)"
    )
    parser.add_argument(
        "--solo",
        action="store_true",
        help="measure each worker alone first (one after another), then all together: the summary gives each "
        "worker's slowdown from sharing the machine",
    )
    parser.add_argument(
        "--nsys",
        action="store_true",
        help="run the whole launch under Nsight Systems (nsys profile --trace=cuda,nvtx,osrt), the report in "
        "the launch directory; NVTX ranges carry each worker's name",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default=None,
        help="local processes (default), or Ray tasks across a cluster's nodes (pip install "
        "framescope[ray]); without --cluster, Ray connects to RAY_ADDRESS or starts on this machine",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on this Ray cluster (implies --backend ray): ray://HEAD:10001, HEAD:6379, or auto (the "
        "cluster this machine belongs to); each worker's run directory is gathered here",
    )
    parser.add_argument("--json", action="store_true", help="print the launch's summary.json at the end")


def _table(phase: str, states: dict[str, Any]) -> Table:
    table = Table(title=f"workers ({phase})", title_justify="left")
    for column in ("worker", "state", "steps", "FPS", "note"):
        table.add_column(column, justify="right" if column in ("steps", "FPS") else "left")
    for state in states.values():
        style = STATE_STYLE.get(state.state)
        table.add_row(
            state.name,
            f"[{style}]{state.state}[/]" if style else state.state,
            str(state.steps),
            f"{state.fps:.1f}" if state.fps else "-",
            (state.error or "")[:60],
        )
    return table


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="launch", title_justify="left")
    for column in ("worker", "status", "node", "cores", "FPS", "solo FPS", "slowdown", "run directory"):
        table.add_column(column, justify="right" if "FPS" in column or column == "slowdown" else "left")
    for worker in summary["workers"]:
        style = STATE_STYLE.get(worker["status"])
        table.add_row(
            worker["name"],
            f"[{style}]{worker['status']}[/]" if style else worker["status"],
            worker.get("node") or "-",
            ",".join(map(str, worker["cores"])) if worker["cores"] else "all",
            f"{worker['steady_fps']:.1f}" if worker["steady_fps"] else "-",
            f"{worker['solo_fps']:.1f}" if worker["solo_fps"] else "-",
            f"{worker['slowdown']:.2f}x" if worker["slowdown"] else "-",
            worker["run_dir"] or "-",
        )
    return table


def launch_command(args: argparse.Namespace) -> int:
    import torch

    from framescope.launch import load_launch

    backend = args.backend or ("ray" if args.cluster else "local")
    if backend == "local" and args.cluster:
        raise ConfigError("--cluster runs the workers on Ray; drop --backend local, or drop --cluster.")
    if backend == "ray":
        from framescope.launch._ray import connect, ray_notes

        if args.nsys:
            raise ConfigError(
                "--nsys profiles processes on this machine, not Ray's workers on other nodes; drop --nsys "
                "(or run nsys on each node), or launch locally."
            )
        with connect(args.cluster) as cluster:  # cores: auto splits the smallest node's CPUs
            spec = load_launch(args.config, available=list(range(cluster.min_cpus)), gpus=cluster.max_gpus)
            spec.notes = ray_notes(spec, cluster)
            return _launch_and_show(args, spec, backend)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return _launch_and_show(args, load_launch(args.config, gpus=gpus), backend)


def _launch_and_show(args: argparse.Namespace, spec: LaunchSpec, backend: str) -> int:
    from framescope.launch import launch, launch_dir_for, nsys_command

    launch_dir = launch_dir_for(args.output_dir, args.name)
    if args.nsys:
        inner = [sys.executable, "-m", "framescope", "launch", str(args.config), "--output-dir",
                 str(args.output_dir), "--name", launch_dir.name, *(["--solo"] if args.solo else []),
                 *(["--json"] if args.json else [])]  # fmt: skip
        command = nsys_command(launch_dir, inner)
        launch_dir.mkdir(parents=True)
        (launch_dir / "nsys-command.txt").write_text(" ".join(command) + "\n", encoding="utf-8")
        return subprocess.run(command, check=False).returncode
    console = Console(file=sys.stderr if args.json else sys.stdout, soft_wrap=True)
    for note in spec.notes:
        console.print(f"placement: {note}", markup=False)
    where = " on Ray" if backend == "ray" else ""
    console.print(f"launching {len(spec.workers)} worker(s){where} into {launch_dir}", markup=False)
    live = Live(_table("starting", {}), console=console, transient=False, auto_refresh=False)
    shown: dict[str, str] = {}

    def tell(phase: str, states: dict[str, Any]) -> None:
        if console.is_terminal:
            live.update(_table(phase, states), refresh=True)
            return
        for state in states.values():  # not a terminal: one line per change of state
            if shown.get(f"{phase}:{state.name}") != state.state:
                shown[f"{phase}:{state.name}"] = state.state
                note = f" ({state.error})" if state.error and state.state != "running" else ""
                console.print(f"[{phase}] {state.name}: {state.state}{note}", markup=False)

    if console.is_terminal:
        live.start()
    try:
        summary, stopped = launch(
            spec, launch_dir, solo=args.solo, on_change=tell, command=sys.argv, backend=backend
        )
    finally:
        if console.is_terminal:
            live.stop()
    console.print(_summary_table(summary))
    console.print(f"total: {summary['total_fps']:.1f} FPS; launch directory: {launch_dir}", markup=False)
    if args.json:
        print(json.dumps(summary, indent=2))
    if stopped is not None:
        return 128 + int(stopped)
    return 0 if all(w["status"] == "complete" for w in summary["workers"]) else 1
