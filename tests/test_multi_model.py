"""Several models per frame: settings, strategies (fakes for the logic, real small models on generated clips
for the integration), the records, the crash of a model's process, ``--multi-model all``."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import statistics
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from tests.conftest import run_cli

from framescope import RunObserver, load_run, run
from framescope._multi import model_threads
from framescope._multi_proc import ModelRunError, split_cores
from framescope.config import RunConfig, command_line
from framescope.errors import ConfigError
from framescope.instrument import StageTimer
from framescope.pipeline import StepPlan
from framescope.pipeline._multi import (
    ModelFailed,
    ModelWork,
    SharedPrep,
    StreamStrategy,
    ThreadStrategy,
)
from framescope.pipeline._stages import PlannedStage
from framescope.records import COLUMNS
from framescope.records._multi import FRAMES_FILE, MODEL_EXTRA_COLUMNS
from framescope.stages import Stage

TWO = "mobilenet_v3_small,resnet18"


def _config(input_path: str, tmp_path: Path, **flat: Any) -> RunConfig:
    values: dict[str, Any] = {
        "model_name": TWO,
        "input_path": input_path,
        "batch_size": 4,
        "output_dir": str(tmp_path / "runs"),
        "solo_steps": 3,
        "progress": "none",
        **flat,
    }
    return RunConfig.from_flat(**values)


# --- settings ---------------------------------------------------------------------------------------------


def test_model_name_takes_a_comma_list_and_the_single_model_path_is_unchanged() -> None:
    config = RunConfig.from_flat(model_name="resnet18, mobilenet_v3_small", input_path="v.mp4")
    assert [m.name for m in config.model_list] == ["resnet18", "mobilenet_v3_small"]
    assert config.several_models and config.multi_model == "serial"
    single = RunConfig.from_flat(model_name="resnet50", input_path="v.mp4")
    assert single.model_list == [single.model] and not single.several_models
    assert RunConfig.from_dict(yaml.safe_load(single.to_yaml())) == single


def test_a_models_list_in_yaml_round_trips_and_inherits_the_model_section(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(
        "source: {input_path: v.mp4}\nmodel: {name: x, amp: false}\n"
        "models:\n  - {name: resnet18, weights: r.pt}\n  - {name: mobilenet_v3_small}\n"
        "multi_model: threads\n"
    )
    config = RunConfig.from_yaml(file)
    assert config.model.name == "resnet18,mobilenet_v3_small"
    assert [(m.name, m.weights) for m in config.model_list] == [
        ("resnet18", "r.pt"),
        ("mobilenet_v3_small", "none"),
    ]
    again = RunConfig.from_dict(yaml.safe_load(config.to_yaml()))
    assert again == config
    assert config.to_dict()["models"] == [
        {"name": "resnet18", "weights": "r.pt"},
        {"name": "mobilenet_v3_small"},
    ]
    amp = config.replace(use_amp=True)  # a change to the section reaches every entry that does not set it
    assert all(m.amp for m in amp.model_list)
    renamed = config.replace(model_name="resnet18,resnet50")
    assert [(m.name, m.weights) for m in renamed.model_list] == [("resnet18", "r.pt"), ("resnet50", "none")]
    assert "--model-name resnet18,mobilenet_v3_small" in command_line(config)


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"model_name": "resnet18,resnet18"}, r"names resnet18 more than once"),
        ({"model_name": "resnet18,,resnet50"}, r"has an empty name"),
        ({"model_name": "resnet18", "multi_model": "threads"}, r"--multi-model threads needs several models"),
        ({"model_name": TWO, "multi_model": "streams"}, r"streams runs each model on a CUDA stream"),
        ({"model_name": TWO, "pipeline": "async"}, r"--pipeline async runs one model"),
        ({"model_name": TWO, "mode": "retrain"}, r"--mode retrain runs one model"),
        ({"model_name": TWO, "multi_model": "later"}, r"multi_model = 'later' is not one of serial"),
    ],
)
def test_bad_settings_are_one_line(flat: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_flat(input_path="v.mp4", **flat)
    assert "\n" not in str(info.value)


def test_bad_input_on_the_command_line_is_one_line_exit_2(clip: Path, tmp_path: Path) -> None:
    for args in (
        ["--model-name", "resnet18,nosuchnet"],
        ["--model-name", TWO, "--multi-model", "streams"],
        ["--model-name", TWO, "--multi-model", "streams", "--infer-on-gpu"],
        ["--model-name", "resnet18", "--multi-model", "processes"],
    ):
        if "--infer-on-gpu" in args and torch.cuda.is_available():
            continue
        result = run_cli("run", *args, "--input_path", str(clip), "--output-dir", str(tmp_path))
        assert result.code == 2, (args, result.err)
        assert result.err.count("\n") == 1, result.err
    assert not list(tmp_path.iterdir())  # refused before any run directory exists


def test_thread_plan_divides_the_cores_only_among_models_that_run_at_once() -> None:
    assert model_threads("serial", 2, 3, None) == 2
    assert model_threads("asyncio", 2, 2, None) == 2
    assert model_threads("threads", 2, 2, None) == 1
    assert model_threads("processes", 8, 3, None) == 2
    assert model_threads("threads", 2, 3, None) == 1
    assert model_threads("threads", 2, 2, 2) == 2  # --torch-threads: per model, as asked
    assert split_cores([0, 1, 2, 3], 2) == [(0, 2), (1, 3)]
    assert split_cores([0, 1], 3) == [(0,), (1,), (0,)]
    assert split_cores(None, 2) == [None, None]


# --- strategies with fakes --------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def _work(name: str, log: list[str], clock: Any, *, fail: bool = False, stream: Any = None) -> ModelWork:
    def stage(label: str) -> Any:
        def run_it(value: Any) -> Any:
            log.append(f"{name}:{label}")
            if fail and label == "exec":
                raise RuntimeError("forward failed")
            return value

        return run_it

    plan = StepPlan(
        [
            PlannedStage(Stage.PREP, stage("prep")),
            PlannedStage(Stage.EXEC, stage("exec")),
            PlannedStage(Stage.D2H, stage("d2h")),
            PlannedStage(Stage.POST, stage("post")),
        ]
    )
    return ModelWork(name, plan, StageTimer(clock), clock, stream=stream)


class _FakeEvent:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.stream: str | None = None

    def record(self, stream: str) -> None:
        self.stream = stream
        self.log.append(f"event on {stream}")

    def synchronize(self) -> None:
        self.log.append(f"sync {self.stream}")

    def elapsed_time(self, other: _FakeEvent) -> float:
        return 7.0  # milliseconds, as CUDA events report them


def test_streams_launch_every_model_before_collecting_any() -> None:
    log: list[str] = []
    clock = _Clock()
    entered: list[str] = []

    class _Ctx:
        def __init__(self, stream: str) -> None:
            self.stream = stream

        def __enter__(self) -> None:
            entered.append(self.stream)

        def __exit__(self, *exc: object) -> None:
            pass

    strategy = StreamStrategy(
        [_work("a", log, clock, stream="stream-a"), _work("b", log, clock, stream="stream-b")],
        stream_context=_Ctx,
        new_event=lambda: _FakeEvent(log),
    )
    timings = strategy.run(torch.zeros(1), ["a", "b"])
    work_log = [entry for entry in log if ":" in entry]
    assert work_log == ["a:prep", "a:exec", "b:prep", "b:exec", "a:d2h", "a:post", "b:d2h", "b:post"]
    assert entered == ["stream-a", "stream-b", "stream-a", "stream-b"]
    assert timings["a"].samples[Stage.EXEC] == pytest.approx(0.007)  # the stream's device time
    assert timings["b"].end_s > timings["a"].end_s


def test_shared_preprocessing_runs_once_per_batch() -> None:
    calls: list[int] = []

    def double(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return batch * 2

    shared = SharedPrep(double)
    batch = torch.ones(2)
    assert torch.equal(shared(batch), shared(batch))
    assert len(calls) == 1
    shared(torch.ones(2))
    assert len(calls) == 2


def test_a_model_failing_in_its_thread_names_the_model_and_the_threads_end() -> None:
    log: list[str] = []
    clock = _Clock()
    strategy = ThreadStrategy(
        [_work("good", log, clock), _work("bad", log, clock, fail=True)], torch_threads=1
    )
    strategy.start()
    try:
        assert set(strategy.run(torch.zeros(1), ["good"])) == {"good"}
        with pytest.raises(ModelFailed, match="forward failed") as info:
            strategy.run(torch.zeros(1), ["good", "bad"])
        assert info.value.model == "bad"
    finally:
        strategy.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("framescope-")]


# --- real runs --------------------------------------------------------------------------------------------


def _csvs(run_dir: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for path in run_dir.glob("M_*_P_*_metrics.csv"):
        found[path.name.split("_P_")[0][2:]] = pd.read_csv(path)
    return found


@pytest.mark.slow
def test_serial_writes_a_csv_per_model_frames_csv_and_consistent_interference(
    clip: Path, tmp_path: Path
) -> None:
    result = run(_config(str(clip), tmp_path))
    assert result.status == "complete"
    csvs = _csvs(result.run_dir)
    assert set(csvs) == {"mobilenet_v3_small", "resnet18"}
    steps = 36 // 4
    for rows in csvs.values():
        assert list(rows.columns) == [*COLUMNS, *MODEL_EXTRA_COLUMNS]
        assert len(rows) == steps
        assert rows["exec_latency_ms"].notna().all() and rows["read_latency_ms"].notna().all()
    frames = pd.read_csv(result.run_dir / FRAMES_FILE)
    assert len(frames) == steps and frames["frames"].sum() == 36
    assert {"mobilenet_v3_small_done_ms", "resnet18_done_ms"} <= set(frames.columns)
    # the frame's step ends when the last model finished; serial runs them in the order given
    assert (frames["total_step_latency_ms"] >= frames["resnet18_done_ms"]).all()
    assert (csvs["resnet18"]["wait_ms"] >= csvs["mobilenet_v3_small"]["work_ms"] * 0.99).all()
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["multi_model"] == "serial"
    assert summary["steady_fps"] == pytest.approx(result.fps)
    for name, model in summary["models"].items():
        steady = csvs[name][csvs[name]["warmup"] == 0]
        assert model["together_step_ms"] == pytest.approx(statistics.median(steady["work_ms"]), rel=1e-3)
        assert len(model["solo_work_ms"]) == 3
        assert model["solo_step_ms"] == pytest.approx(statistics.median(model["solo_work_ms"][1:]))
        assert model["interference"] == pytest.approx(model["together_step_ms"] / model["solo_step_ms"])
        assert model["steady_fps"] > 0 and set(model["exec"]) == {"mean_ms", "p50_ms", "p99_ms"}
    assert summary["models"]["resnet18"]["prep_shared_with"] == ["mobilenet_v3_small"]
    assert summary["threads"]["multi"]["torch_threads_per_model"] == summary["threads"]["torch"]
    loaded = load_run(result.run_dir)  # a multi-model directory reads back: the first model's CSV
    assert loaded.summary["models"].keys() == summary["models"].keys() and len(loaded.rows) == steps
    for command in ("report", "diagnose"):
        assert run_cli(command, str(result.run_dir)).code == 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["threads", "asyncio", "asyncio-threads"])
def test_each_in_process_strategy_runs(clip: Path, tmp_path: Path, strategy: str) -> None:
    result = run(_config(str(clip), tmp_path, multi_model=strategy, max_steps=5, solo_steps=2))
    assert result.status == "complete"
    csvs = _csvs(result.run_dir)
    assert all(len(rows) == 5 for rows in csvs.values())
    models = result.summary["models"]
    assert all(m["interference"] is not None for m in models.values())
    first, second = csvs["mobilenet_v3_small"], csvs["resnet18"]
    if strategy == "asyncio":
        # a blocking call never yields: the second coroutine starts when the first model has finished
        assert (second["wait_ms"] >= first["work_ms"] * 0.99).all()
        assert result.summary["threads"]["multi"]["models_at_once"] == 1
    else:
        assert (second["wait_ms"] < first["work_ms"]).all()  # started together
        assert result.summary["threads"]["multi"]["models_at_once"] == 2


@pytest.mark.slow
def test_detection_segmentation_and_classification_mix(clip: Path, tmp_path: Path) -> None:
    config = _config(
        str(clip),
        tmp_path,
        model_name="mobilenet_v3_small,deeplabv3_mobilenet_v3_large,ssdlite320_mobilenet_v3_large",
        batch_size=2,
        max_steps=2,
        solo_steps=0,
        prep_level="simple",
    )
    result = run(config)
    assert result.status == "complete"
    assert {m["task"] for m in result.summary["models"].values()} == {
        "classification",
        "segmentation",
        "detection",
    }
    assert all(m["interference"] is None for m in result.summary["models"].values())  # no solo phase


@pytest.mark.slow
def test_processes_share_the_batch_through_shared_memory(clip: Path, tmp_path: Path) -> None:
    result = run(_config(str(clip), tmp_path, multi_model="processes", max_steps=4, solo_steps=2))
    assert result.status == "complete"
    handoff = result.summary["threads"]["multi"]["handoff"]
    assert handoff["shared_memory_bytes"] == 4 * 3 * 240 * 320  # one uint8 batch
    assert handoff["bytes_sent_per_step"] < 100  # the step and the frame count: never the frames
    frames = pd.read_csv(result.run_dir / FRAMES_FILE)
    assert frames["handoff_ms"].notna().all()
    pids = {m["process"]["pid"] for m in result.summary["models"].values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(m["process"]["peak_rss_mb"] for m in result.summary["models"].values())
    assert all(len(rows) == 4 for rows in _csvs(result.run_dir).values())


class _KillAt(RunObserver):
    def __init__(self, step: int, name: str) -> None:
        self.step, self.name = step, name

    def on_step(self, row: Any) -> None:
        if row.step == self.step:
            for child in multiprocessing.active_children():
                if child.name == f"framescope-{self.name}" and child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_model_process_ends_the_run_with_one_line_and_keeps_the_rows(
    clip: Path, tmp_path: Path
) -> None:
    config = _config(str(clip), tmp_path, multi_model="processes", solo_steps=0)
    with pytest.raises(
        ModelRunError, match=r"^model resnet18's worker process was killed by SIGKILL at step 3"
    ) as info:
        run(config, observer=_KillAt(2, "resnet18"))
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    frames = pd.read_csv(run_dir / FRAMES_FILE)
    assert list(frames["step"]) == [0, 1, 2]
    assert all(len(rows) == 3 for rows in _csvs(run_dir).values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "resnet18" in summary["error"]
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_all_runs_each_strategy_in_its_own_directory_and_prints_them_side_by_side(
    clip: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "run",
        "--model-name",
        TWO,
        "--input_path",
        str(clip),
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--solo-steps",
        "2",
        "--multi-model",
        "all",
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "every",
    )
    assert result.code == 0, result.err
    strategies = ["serial", "threads", "asyncio", "asyncio-threads", "processes"]
    assert sorted(p.name for p in (tmp_path / "every").iterdir()) == sorted(strategies)
    for strategy in strategies:
        summary = json.loads((tmp_path / "every" / strategy / "round-1" / "summary.json").read_text())
        assert summary["multi_model"] == strategy and summary["status"] == "complete"
        assert strategy in result.out
    assert "strategies side by side" in result.out and "vs serial" in result.out
    assert max(len(line) for line in result.out.splitlines()) <= 100  # a log's width


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["streams", "threads", "serial"])
def test_models_on_the_gpu(tmp_path: Path, strategy: str) -> None:
    config = _config(
        "synthetic:320x240:24", tmp_path, multi_model=strategy, infer_on_gpu=True, max_steps=4, solo_steps=2
    )
    result = run(config)
    assert result.status == "complete"
    assert result.summary["timing_method"] == ("cuda-events" if strategy == "streams" else "cuda-sync")
    for model in result.summary["models"].values():
        assert model["device"] == "cuda" and model["exec"]["p50_ms"] > 0 and model["interference"] is not None


def test_all_leaves_streams_out_for_onnxruntime_sessions() -> None:
    from framescope._multi import applicable_strategies

    gpu = RunConfig.from_flat(
        model_name="resnet18,mobilenet_v3_small", input_path="x.mp4", infer_on_gpu=True, multi_model="all"
    )
    assert "streams" in applicable_strategies(gpu)
    assert "streams" not in applicable_strategies(gpu.replace(backend="onnxruntime"))
    assert "streams" not in applicable_strategies(gpu.replace(infer_on_gpu=False))
