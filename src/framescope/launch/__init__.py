"""Many workers from one launch file: placement, processes started together, a launch directory."""

from framescope.launch._launch import (
    LAUNCH_FILE,
    SOLO_DIR,
    SUMMARY_FILE,
    WORKERS_DIR,
    aggregate,
    launch,
    launch_dir_for,
    nsys_command,
)
from framescope.launch._local import LocalLauncher, WorkerState
from framescope.launch._ray import RayLauncher
from framescope.launch._spec import LaunchSpec, Worker, load_launch, parse_launch

__all__ = [
    "LAUNCH_FILE",
    "SOLO_DIR",
    "SUMMARY_FILE",
    "WORKERS_DIR",
    "LaunchSpec",
    "LocalLauncher",
    "RayLauncher",
    "Worker",
    "WorkerState",
    "aggregate",
    "launch",
    "launch_dir_for",
    "load_launch",
    "nsys_command",
    "parse_launch",
]
