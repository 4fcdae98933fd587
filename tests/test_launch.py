"""framescope launch: the launch file and placement (logic), and real worker processes: together after a
barrier, alone with --solo, one failing alone, Ctrl-C keeping every worker's rows, --nsys without nsys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.conftest import run_cli

from framescope.errors import ConfigError
from framescope.launch import parse_launch
from framescope.records import load_run

SMALL = {"name": "mobilenet_v3_small"}


def spec(data: dict[str, Any], cores: list[int] | None = None, gpus: int = 0) -> Any:
    return parse_launch(data, Path("launch.yaml"), available=cores or [0, 1], gpus=gpus)


def test_defaults_merge_into_each_worker_and_replicas_get_names() -> None:
    defaults = {
        "model": {"name": "resnet18", "weights": "none"},
        "batch_size": 4,
        "source": {"input_path": "a"},
    }
    workers = [{"name": "big", "replicas": 2}, {"name": "small", "model": SMALL, "batch_size": 8}]
    launch = spec({"defaults": defaults, "workers": workers})
    assert [w.name for w in launch.workers] == ["big-1", "big-2", "small"]
    small = launch.workers[2].run_config(Path("/out"))
    assert (small.model.name, small.model.weights, small.batch_size) == ("mobilenet_v3_small", "none", 8)
    assert (small.output_dir, small.run_name, small.progress) == ("/out", "small", "none")
    assert launch.workers[0].run_config(Path("/out")).batch_size == 4


def test_cores_auto_splits_the_cores_and_says_when_workers_must_share() -> None:
    base = {"defaults": {"model": SMALL, "source": {"input_path": "a.mp4"}}, "cores": "auto"}
    two = spec({**base, "workers": [{"name": "a"}, {"name": "b"}]})
    assert [w.cores for w in two.workers] == [(0,), (1,)] and not two.notes
    assert two.workers[1].run_config(Path(".")).core_bind == "1"
    four = spec({**base, "workers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, cores=[0, 1, 2, 3])
    assert [w.cores for w in four.workers] == [(0,), (1,), (2,)]
    three = spec({**base, "workers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    assert "3 workers with cores: auto share 2 core(s): some share a core" in three.notes
    explicit = spec(
        {**base, "workers": [{"name": "a", "core_bind": "0-1"}, {"name": "b", "cores": "1"}, {"name": "c"}]}
    )
    assert [w.cores for w in explicit.workers] == [(0, 1), (1,), (0, 1)]  # nothing left: c shares them
    assert "workers a and b share core 1" in explicit.notes
    default = spec({**base, "workers": [{"name": "a", "core_bind": "all"}, {"name": "b"}]})
    del base["cores"]
    assert [w.cores for w in default.workers] == [(0,), (1,)]  # auto is the default; core_bind: all is unset
    shared = spec({**base, "workers": [{"name": "a", "cores": "all"}, {"name": "b", "cores": "all"}]})
    assert [w.cores for w in shared.workers] == [(0, 1), (0, 1)]
    assert shared.notes == ["workers a and b share core 0", "workers a and b share core 1"]


def test_gpus_are_assigned_round_robin_or_as_asked() -> None:
    base = {"defaults": {"model": SMALL, "source": {"input_path": "a.mp4"}}}
    launch = spec(
        {**base, "gpu": "auto", "workers": [{"name": "a"}, {"name": "b"}, {"name": "c", "gpu": 0}]}, gpus=2
    )
    assert [w.gpu for w in launch.workers] == [0, 1, 0]
    assert [w.gpu for w in spec({**base, "gpu": "auto", "workers": [{"name": "a"}]}).workers] == [None]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workers": []}, "needs a non-empty `workers:` list"),
        ({"workers": [{"name": "a"}], "worker": 1}, "unknown key(s) worker"),
        ({"workers": [{"name": "a b", "model": SMALL}]}, "worker 1's name 'a b' should be letters"),
        ({"workers": [{"name": "a", "model": SMALL, "output_dir": "x"}]}, "worker 'a' sets output_dir"),
        ({"workers": [{"name": "a", "model": {"name": "nope"}}]}, "worker 'a': "),
        (
            {"workers": [{"name": "a", "model": SMALL}, {"name": "a", "model": SMALL}]},
            "worker name(s) a used twice",
        ),
        (
            {"workers": [{"name": "a", "model": SMALL, "core_bind": "5"}]},
            "worker 'a' is bound to core(s) [5]",
        ),
        ({"workers": [{"name": "a", "model": SMALL, "gpu": 1}]}, "worker 'a' asks for GPU 1, but 0 GPU(s)"),
        ({"workers": [{"name": "a", "model": SMALL, "replicas": 0}]}, "replicas 0 should be a whole number"),
    ],
)
def test_a_bad_launch_file_names_the_worker_and_the_fix(data: dict[str, Any], message: str) -> None:
    data.setdefault("defaults", {"source": {"input_path": "a.mp4"}})
    with pytest.raises(ConfigError) as error:
        spec(data)
    assert message in str(error.value)
    assert str(error.value).startswith("launch.yaml: ")


# --- real workers -------------------------------------------------------------------------------------


def write_launch(tmp_path: Path, clip: Path, workers: list[dict[str, Any]], **top: Any) -> Path:
    path = tmp_path / "launch.yaml"
    data = {"defaults": {"source": {"input_path": str(clip)}, "batch_size": 2, "model": SMALL}, **top}
    path.write_text(yaml.safe_dump({**data, "workers": workers}))
    return path


@pytest.mark.slow
def test_two_workers_run_together_and_alone_on_their_own_cores(tmp_path: Path, clip: Path) -> None:
    config = write_launch(tmp_path, clip, [{"name": "a"}, {"name": "b"}], cores="auto")
    done = run_cli("launch", str(config), "--output-dir", str(tmp_path / "out"), "--solo", "--name", "l1")
    assert done.code == 0, done.err
    launch_dir = tmp_path / "out" / "l1"
    summary = json.loads((launch_dir / "summary.json").read_text())
    workers = {w["name"]: w for w in summary["workers"]}
    assert set(workers) == {"a", "b"} and {w["status"] for w in workers.values()} == {"complete"}
    for name, worker in workers.items():
        run = load_run(launch_dir / worker["run_dir"])
        assert run.summary["steady_fps"] == pytest.approx(worker["steady_fps"])
        assert run.config["core_bind"] == str(worker["cores"][0])
        assert run.summary["threads"]["cores"] == worker["cores"]
        solo = load_run(launch_dir / "solo" / name)
        assert worker["solo_fps"] == pytest.approx(solo.summary["steady_fps"])
        assert worker["slowdown"] == pytest.approx(worker["solo_fps"] / worker["steady_fps"])
    assert summary["total_fps"] == pytest.approx(sum(w["steady_fps"] for w in workers.values()))
    resolved = yaml.safe_load((launch_dir / "launch.yaml").read_text())
    assert [w["cores"] for w in resolved["workers"]] == [[0], [1]]
    assert "total:" in done.out and "launch directory:" in done.out
    report = run_cli("report", str(launch_dir), "-o", str(tmp_path / "r.html"))
    assert report.code == 0, report.err
    page = (tmp_path / "r.html").read_text()
    assert "comparison of 2 runs" in page  # a launch directory reports its workers side by side
    compared = run_cli("compare", str(launch_dir), str(launch_dir / "workers"), "--json")
    assert compared.code == 0, compared.err
    assert json.loads(compared.out)["method"] == "runs"  # the two workers run one job: several runs a side


def test_a_worker_with_a_missing_input_fails_alone(tmp_path: Path, clip: Path) -> None:
    config = write_launch(
        tmp_path,
        clip,
        [{"name": "good", "max_steps": 6}, {"name": "bad", "source": {"input_path": "nope.mp4"}}],
    )
    done = run_cli("launch", str(config), "--output-dir", str(tmp_path / "out"), "--name", "l2", "--json")
    assert done.code == 1, done.err
    summary = json.loads(done.out)
    workers = {w["name"]: w for w in summary["workers"]}
    assert workers["good"]["status"] == "complete" and workers["good"]["steady_fps"] > 0
    assert workers["bad"]["status"] == "failed"
    assert "nope.mp4" in workers["bad"]["error"]


def test_nsys_without_nsys_is_one_line(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nsys here
    config = write_launch(tmp_path, clip, [{"name": "a"}])
    done = run_cli("launch", str(config), "--output-dir", str(tmp_path / "out"), "--nsys")
    assert done.code == 2
    assert done.err.startswith("framescope: error: --nsys needs NVIDIA Nsight Systems' `nsys` on PATH")
    assert len(done.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_worker_with_its_rows(tmp_path: Path, signum: int) -> None:
    path = tmp_path / "launch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"source": {"input_path": "synthetic:64x64"}, "batch_size": 2, "model": SMALL},
                "workers": [{"name": "a"}, {"name": "b"}],
            }
        )
    )
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "framescope", "launch", str(path), "--output-dir", str(out), "--name", "l3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    workers = out / "l3" / "workers"
    while time.monotonic() < deadline:  # both workers past their barrier and writing rows
        csvs = list(workers.glob("*/M_*_metrics.csv")) if workers.exists() else []
        if len(csvs) == 2 and all(len(pd.read_csv(c)) >= 3 for c in csvs):
            break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"workers never ran: {process.communicate()}")
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    summary = json.loads((out / "l3" / "summary.json").read_text())
    assert summary["interrupted"] is True
    for worker in summary["workers"]:
        assert worker["status"] == "interrupted", worker
        run = load_run(out / "l3" / worker["run_dir"])
        assert run.summary["status"] == "interrupted"
        assert len(run.rows) == run.summary["steps"] >= 3
