"""framescope launch on Ray: a real two-node Ray cluster on this machine (a head and a second node, each
started by ``ray start`` as its own process group with one CPU), workers spread over both nodes, their run
directories gathered back, rows streamed while they run, a node killed mid-run, Ctrl-C; and, without Ray,
``--backend ray`` saying how to install it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.conftest import needs_system_dependency, run_cli

from framescope.errors import ConfigError
from framescope.launch import parse_launch
from framescope.records import load_run

HAS_RAY = importlib.util.find_spec("ray") is not None
RAY = str(Path(sys.executable).parent / "ray")
SMALL = {"name": "mobilenet_v3_small"}
NODE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # a killed node is declared dead in about 5 s instead of Ray's default 15 s or more, yet a busy one is not
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "3000",
    "RAY_health_check_failure_threshold": "5",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RayCluster:
    address: str
    root: Path
    groups: dict[str, int]
    """Each node's process group (its `ray start` ran as a session leader): killing one kills the node."""

    def add_node(self, name: str, *args: str) -> None:
        self.groups[name] = start_ray(self.root / name, name, *args)

    def kill_node(self, name: str) -> None:
        os.killpg(self.groups.pop(name), signal.SIGKILL)

    def stop(self) -> None:
        for group in self.groups.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.groups.clear()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_ray(temp_dir: Path, name: str, *args: str) -> int:
    process = subprocess.Popen(
        [
            RAY,
            "start",
            "--num-cpus",
            "1",
            "--temp-dir",
            str(temp_dir),
            "--node-name",
            name,
            "--object-store-memory",
            str(80 << 20),
            "--disable-usage-stats",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **NODE_ENV},
    )
    output, _ = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"ray start ({name}) failed:\n{output}")
    return process.pid


@pytest.fixture
def ray_cluster() -> Iterator[RayCluster]:
    """A head and a second node, one CPU each, stopped (every process) afterwards."""
    needs_system_dependency(HAS_RAY, "Ray (pip install framescope[ray]; the dev extra has it)")
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="fsray", dir="/tmp"))  # Ray's socket paths must stay short
    cluster = RayCluster(f"127.0.0.1:{port}", root, {})
    try:
        cluster.add_node(
            "head",
            "--head",
            "--port",
            str(port),
            "--include-dashboard=false",
            "--ray-client-server-port",
            str(free_port()),
        )
        cluster.add_node("node2", "--address", cluster.address)
        yield cluster
    finally:
        cluster.stop()


def write_launch(tmp_path: Path, defaults: dict[str, Any]) -> Path:
    path = tmp_path / "launch.yaml"
    base = {"source": {"input_path": "synthetic:64x64"}, "batch_size": 2, "model": SMALL}
    path.write_text(
        yaml.safe_dump({"defaults": {**base, **defaults}, "workers": [{"name": "a"}, {"name": "b"}]})
    )
    return path


def launch_process(config: Path, out: Path, cluster: RayCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framescope",
            "launch",
            str(config),
            "--cluster",
            cluster.address,
            "--output-dir",
            str(out),
            "--name",
            "l",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows_streamed(workers: Path) -> dict[str, int]:
    counts = {}
    for csv in workers.glob("*/M_*_metrics.csv") if workers.exists() else []:
        try:
            counts[csv.parent.name] = len(pd.read_csv(csv))
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            counts[csv.parent.name] = 0
    return counts


def wait_for_rows(process: subprocess.Popen[str], workers: Path, at_least: int) -> dict[str, int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = rows_streamed(workers)
        if len(counts) == 2 and min(counts.values()) >= at_least:
            return counts
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"rows never streamed back: {process.communicate()}")


# --- without Ray, and the launch file -------------------------------------------------------------------


def test_backend_ray_without_ray_is_one_line_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    config = write_launch(tmp_path, {})
    for args in (["--backend", "ray"], ["--cluster", "ray://head:10001"]):
        done = run_cli("launch", str(config), "--output-dir", str(tmp_path / "out"), *args)
        assert done.code == 2
        assert done.err.startswith("framescope: error: --backend ray needs Ray")
        assert "pip install framescope[ray]" in done.err
        assert len(done.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cluster_with_the_local_backend_and_a_bad_placement_are_refused(tmp_path: Path) -> None:
    config = write_launch(tmp_path, {})
    done = run_cli("launch", str(config), "--backend", "local", "--cluster", "auto")
    assert done.code == 2 and "--cluster runs the workers on Ray" in done.err
    data = {"defaults": {"model": SMALL, "source": {"input_path": "a.mp4"}}, "workers": [{"name": "a"}]}
    assert parse_launch(data, Path("l.yaml"), available=[0]).placement == "spread"
    assert parse_launch({**data, "placement": "pack"}, Path("l.yaml"), available=[0]).placement == "pack"
    with pytest.raises(ConfigError, match="placement 'tight' should be spread or pack"):
        parse_launch({**data, "placement": "tight"}, Path("l.yaml"), available=[0])


# --- a real two-node cluster ----------------------------------------------------------------------------


@pytest.mark.slow
def test_workers_spread_over_two_nodes_and_their_run_dirs_come_back(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    config = write_launch(tmp_path, {"max_steps": 30})
    out = tmp_path / "out"
    done = launch_process(config, out, ray_cluster)
    stdout, stderr = done.communicate(timeout=150)
    assert done.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["backend"] == "ray"
    workers = {w["name"]: w for w in summary["workers"]}
    assert {w["status"] for w in workers.values()} == {"complete"}
    assert {w["node"] for w in workers.values()} == {"head", "node2"}  # spread: one worker on each node
    assert len({w["node_id"] for w in workers.values()}) == 2
    for worker in workers.values():
        run = load_run(out / "l" / worker["run_dir"])  # gathered back: no shared file system
        assert run.summary["status"] == "complete"
        assert len(run.rows) == run.summary["steps"] == 30
        assert run.summary["steady_fps"] == pytest.approx(worker["steady_fps"])
        assert run.config["torch_threads"] == 1  # cores: auto on 1-CPU nodes: num_cpus=1, one thread
        assert (out / "l" / worker["run_dir"] / "system.json").is_file()
    assert summary["total_fps"] == pytest.approx(sum(w["steady_fps"] for w in workers.values()))
    resolved = yaml.safe_load((out / "l" / "launch.yaml").read_text())
    assert resolved["backend"] == "ray" and resolved["placement"] == "spread"
    assert "ray: a asks for num_cpus=1" in resolved["notes"]


@pytest.mark.slow
def test_a_killed_node_loses_its_worker_but_keeps_its_streamed_rows(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    # paced like a 10 FPS camera: 5 steps a second, 80 steps, so the kill lands mid-run
    config = write_launch(
        tmp_path, {"max_steps": 80, "source": {"input_path": "synthetic:64x64", "source_fps": 10}}
    )
    out = tmp_path / "out"
    process = launch_process(config, out, ray_cluster)
    seen = wait_for_rows(process, out / "l" / "workers", at_least=5)  # streamed while the workers run
    ray_cluster.kill_node("node2")
    stdout, stderr = process.communicate(timeout=150)
    assert process.returncode == 1, stderr
    workers = {w["node"]: w for w in json.loads(stdout)["workers"]}
    lost, kept = workers["node2"], workers["head"]
    assert lost["status"] == "lost" and lost["error"], lost
    assert kept["status"] == "complete", kept
    assert len(load_run(out / "l" / kept["run_dir"]).rows) == 80
    run = load_run(out / "l" / lost["run_dir"])  # no summary came back: it is rebuilt from the rows
    assert run.summary["status"] == "incomplete"
    assert seen[lost["name"]] <= len(run.rows) < 80
    assert lost["steady_fps"] == pytest.approx(run.summary["steady_fps"])


@pytest.mark.slow
def test_ctrl_c_stops_the_remote_workers_and_brings_their_runs_back(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    config = write_launch(tmp_path, {})  # endless: only the stop ends it
    out = tmp_path / "out"
    process = launch_process(config, out, ray_cluster)
    wait_for_rows(process, out / "l" / "workers", at_least=3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    for worker in summary["workers"]:
        assert worker["status"] == "interrupted", worker
        run = load_run(out / "l" / worker["run_dir"])
        assert run.summary["status"] == "interrupted"  # its own summary, written as on Ctrl-C
        assert len(run.rows) == run.summary["steps"] >= 3
