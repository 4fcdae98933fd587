"""framescope sweep: points from lists (grid and one factor at a time), statuses and sweep.csv from fake runs
(exact logic: out of memory, Ctrl-C, bad input), real sweeps on the CPU (a tiny one, a real host OOM), the
memory block of the run summary, and the verdicts (Pareto front, knee)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import run_cli
from tests.test_report import browser  # noqa: F401  (a fixture)

from framescope import RunConfig
from framescope.errors import ConfigError, OutOfMemory
from framescope.experiment import StopRule
from framescope.instrument.memory import PeakMemory
from framescope.records import COLUMNS, RunResult, load_run
from framescope.report import write_report
from framescope.stats import knee, pareto_front
from framescope.sweep import Sweep, expand, parse_list, verdicts


def read_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep.csv").open() as file:
        return list(csv.DictReader(file))


def only_dir(parent: Path) -> Path:
    [found] = [p for p in parent.iterdir() if p.is_dir()]
    return found


# --- points ---------------------------------------------------------------------------------------------


def test_a_grid_is_every_combination_batch_size_outermost() -> None:
    points = expand({"use_amp": [False, True], "batch_size": [1, 8]})
    assert [p.name for p in points] == [
        "batch_size-1_use_amp-off",
        "batch_size-1_use_amp-on",
        "batch_size-8_use_amp-off",
        "batch_size-8_use_amp-on",
    ]
    assert points[3].overrides == {"batch_size": 8, "use_amp": True}


def test_one_factor_at_a_time_varies_each_list_alone_from_the_first_values() -> None:
    points = expand(
        {"batch_size": [4, 1, 16], "pipeline": ["sync", "async"], "torch_threads": [None, 1]}, "ofat"
    )
    assert [p.overrides for p in points] == [
        {"batch_size": 4, "pipeline": "sync", "torch_threads": None},
        {"batch_size": 1, "pipeline": "sync", "torch_threads": None},
        {"batch_size": 16, "pipeline": "sync", "torch_threads": None},
        {"batch_size": 4, "pipeline": "async", "torch_threads": None},
        {"batch_size": 4, "pipeline": "sync", "torch_threads": 1},
    ]
    assert points[0].name == "batch_size-4_pipeline-sync_torch_threads-auto"


def test_lists_are_typed_as_their_settings() -> None:
    assert parse_list("batch_size", "1,2, 4") == [1, 2, 4]
    assert parse_list("use_amp", "off,on") == [False, True]
    assert parse_list("torch_threads", "auto,2") == [None, 2]
    assert parse_list("decode_size", "native,320x240,auto") == [None, "320x240", "auto"]
    assert parse_list("pipeline", "async") == ["async"]


@pytest.mark.parametrize(
    ("setting", "text", "message"),
    [
        ("batch_size", "1,,4", r"--batch-size '1,,4' has an empty value; pass a comma list"),
        ("batch_size", "", r"empty value"),
        ("batch_size", "1,0", r"--batch-size '0' should be a positive integer"),
        (
            "use_amp",
            "off,maybe",
            r"--use-amp 'maybe': a switch sweeps off and on; pass e\.g\. --use-amp off,on",
        ),
        ("pipeline", "sync,fast", r"--pipeline 'fast' is not one of sync, async"),
        ("decode_size", "big", r"--decode-size 'big' should be WIDTHxHEIGHT, auto or native"),
        ("batch_size", "2,2", r"--batch-size lists 2 twice"),
    ],
)
def test_a_bad_list_names_the_value_and_the_fix(setting: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_list(setting, text)


# --- fake runs --------------------------------------------------------------------------------------------


class FakeRuns:
    """framescope.run stand-in: rate = ``per_frame`` frames/s per frame of batch (capped), a step's p99 grows
    with the batch; ``oom`` batch sizes raise OutOfMemory, ``interrupt_at`` raises KeyboardInterrupt on that
    call, ``signal_at`` sends this process SIGINT (a first Ctrl-C) during that call."""

    def __init__(
        self,
        *,
        oom: set[int] | None = None,
        interrupt_at: int | None = None,
        signal_at: int | None = None,
        stable: bool = True,
    ) -> None:
        self.oom, self.interrupt_at, self.signal_at = oom or set(), interrupt_at, signal_at
        self.stable = stable
        self.calls: list[str] = []
        self.configs: list[RunConfig] = []

    def __call__(self, config: RunConfig, observer: Any = None) -> RunResult:
        self.calls.append(f"{Path(config.output_dir).name}/{config.run_name}")
        self.configs.append(config)
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if len(self.calls) == self.signal_at:
            os.kill(os.getpid(), signal.SIGINT)
        if config.batch_size in self.oom and not config.model.amp:
            raise OutOfMemory(f"out of memory running the model at batch size {config.batch_size}")
        run_dir = Path(config.output_dir) / str(config.run_name)
        run_dir.mkdir(parents=True)
        batch = config.batch_size
        fps = 100.0 * min(batch, 8) / (1 + 0.01 * batch) * (1.5 if config.model.amp else 1.0)
        step = 1000.0 * batch / fps
        summary = {
            "status": "complete",
            "steady_fps": fps,
            "stages": {
                "total_step_latency_ms": {"mean_ms": step, "p50_ms": step, "p99_ms": 1.2 * step},
                "read_latency_ms": {"mean_ms": 0.1 * step},
                "exec_latency_ms": {"mean_ms": 0.8 * step},
            },
            "memory": {"host_peak_mb": 100.0 + batch, "device_peak_mb": None},
        }
        if observer is not None:
            observer.stable = self.stable
        return RunResult(run_dir, config.to_dict(), {}, pd.DataFrame(columns=list(COLUMNS)), summary)


def base(tmp_path: Path, **flat: Any) -> RunConfig:
    return RunConfig.from_flat(
        model_name="mobilenet_v3_small", input_path="synthetic:64x64:40", output_dir=str(tmp_path), **flat
    )


def test_a_sweep_writes_one_row_per_point_and_the_verdicts(tmp_path: Path) -> None:
    runs = FakeRuns()
    sweep = Sweep(base(tmp_path), {"batch_size": [1, 2, 4, 8, 16, 32]}, p99_budget_ms=12.5, run=runs)
    report = sweep.run()
    sweep_dir = sweep.sweep_dir
    assert sweep_dir is not None and sweep_dir.parent == tmp_path
    assert sweep_dir.name.startswith("sweep-mobilenet_v3_small-")
    rows = read_csv(sweep_dir)
    assert [r["point"] for r in rows] == [f"batch_size-{b}" for b in (1, 2, 4, 8, 16, 32)]
    assert list(rows[0])[:4] == ["point", "batch_size", "status", "rounds"]
    assert {"read_latency_ms", "exec_latency_ms", "host_peak_mb", "run_dir", "run_dirs"} <= set(rows[0])
    assert all(r["status"] == "ok" for r in rows)
    assert rows[2]["run_dir"] == "points/batch_size-4/round-1"
    assert float(rows[3]["steady_fps"]) == pytest.approx(800 / 1.08, rel=1e-4)
    assert float(rows[3]["step_p99_ms"]) == pytest.approx(1.2 * 1000 * 8 / (800 / 1.08), rel=1e-4)
    assert rows[0]["frame_p99_ms"] == ""  # not a live input
    assert report["best"]["point"] == "batch_size-8"  # the rate peaks at 8 and falls after
    assert report["best_under_budget"]["point"] == "batch_size-4"  # 8's p99 is 12.96 ms
    assert report["pareto_front"] == [f"batch_size-{b}" for b in (1, 2, 4, 8)]  # 16 and 32 lose to 8
    assert report["knee"]["point"] == "batch_size-4"
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["best"] == report["best"] and saved["interrupted"] is False
    assert (sweep_dir / "sweep.yaml").read_text().startswith("base:")


def test_points_repeat_in_interleaved_rounds_and_the_median_round_is_kept(tmp_path: Path) -> None:
    runs = FakeRuns()
    sweep = Sweep(base(tmp_path), {"batch_size": [1, 2]}, rounds=3, run=runs)
    sweep.run()
    assert runs.calls == [
        "batch_size-1/round-1",
        "batch_size-2/round-1",
        "batch_size-2/round-2",
        "batch_size-1/round-2",
        "batch_size-1/round-3",
        "batch_size-2/round-3",
    ]
    assert sweep.sweep_dir is not None
    row = read_csv(sweep.sweep_dir)[0]
    assert (row["rounds"], row["stable_rounds"]) == ("3", "3")
    assert row["run_dirs"].split(";") == [f"points/batch_size-1/round-{r}" for r in (1, 2, 3)]


def test_runs_that_never_settle_are_unstable_and_say_why(tmp_path: Path) -> None:
    sweep = Sweep(base(tmp_path), {"batch_size": [1, 2]}, run=FakeRuns(stable=False))
    report = sweep.run()
    assert [p["status"] for p in report["points"]] == ["unstable", "unstable"]
    assert (
        "batch_size-1: 1 of 1 round(s) ended before the rate was stable (the input ended first)"
        in (report["notes"][0])
    )


def test_out_of_memory_skips_larger_batches_of_the_same_settings_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (simulated) CUDA OOM at batch 4 without AMP: 8 without AMP is skipped, the AMP points all run."""
    freed = []
    monkeypatch.setattr("framescope.sweep._sweep.free_memory", lambda: freed.append(True))
    runs = FakeRuns(oom={4, 8})
    sweep = Sweep(base(tmp_path), {"batch_size": [1, 4, 8], "use_amp": [False, True]}, run=runs)
    report = sweep.run()
    status = {p["point"]: p["status"] for p in report["points"]}
    assert status == {
        "batch_size-1_use_amp-off": "ok",
        "batch_size-1_use_amp-on": "ok",
        "batch_size-4_use_amp-off": "oom",
        "batch_size-4_use_amp-on": "ok",
        "batch_size-8_use_amp-off": "oom",
        "batch_size-8_use_amp-on": "ok",
    }
    assert "batch_size-8_use_amp-off/round-1" not in runs.calls and len(runs.calls) == 5
    assert freed == [True]
    skipped = next(p for p in report["points"] if p["point"] == "batch_size-8_use_amp-off")
    assert skipped["rounds"] == 0 and skipped["error"].startswith("skipped: batch_size-4_use_amp-off")
    assert any("skipped" in note for note in report["notes"])
    assert report["best"]["point"] == "batch_size-8_use_amp-on"


def test_a_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    runs = FakeRuns()

    def flaky(config: RunConfig, observer: Any = None) -> RunResult:
        if config.batch_size == 2:
            from framescope.errors import SourceError

            raise SourceError("the input broke")
        return runs(config, observer)

    report = Sweep(base(tmp_path), {"batch_size": [1, 2, 4]}, run=flaky).run()
    assert [(p["status"], p["error"]) for p in report["points"]] == [
        ("ok", None),
        ("failed", "the input broke"),
        ("ok", None),
    ]


# --- the command line -------------------------------------------------------------------------------------


def sweep_args(out: Path, *more: str) -> list[str]:
    """A sweep of mobilenet_v3_small on ``synthetic:64x64:40``, unless ``more`` names its own input (a second
    --input_path would be a second source)."""
    source = [] if "--input_path" in more else ["--input_path", "synthetic:64x64:40"]
    return ["sweep", "--model-name", "mobilenet_v3_small", *source, "--output-dir", str(out), *more]


def test_ctrl_c_inside_a_run_keeps_the_finished_points_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("framescope._run.run", FakeRuns(interrupt_at=3))
    result = run_cli(*sweep_args(tmp_path, "--batch-size", "1,2,4,8"))
    assert result.code == 130
    sweep_dir = only_dir(tmp_path)
    assert [r["point"] for r in read_csv(sweep_dir)] == ["batch_size-1", "batch_size-2"]
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["interrupted"] is True and saved["not_run"] == ["batch_size-4", "batch_size-8"]
    assert "interrupted" in result.out


def test_a_first_ctrl_c_ends_the_sweep_after_the_run_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("framescope._run.run", FakeRuns(signal_at=2))
    result = run_cli(*sweep_args(tmp_path, "--batch-size", "1,2,4"))
    assert result.code == 130
    rows = read_csv(only_dir(tmp_path))
    assert [(r["point"], r["status"]) for r in rows] == [("batch_size-1", "ok"), ("batch_size-2", "ok")]
    assert "stopping after the run in progress" in result.out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_the_console_prints_a_line_per_run_the_table_and_the_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("framescope._run.run", FakeRuns(oom={8}))
    result = run_cli(*sweep_args(tmp_path, "--batch-size", "1,4,8,16", "--p99-budget-ms", "12.3"))
    assert result.code == 0, result.err
    assert "[1/4] batch_size-1 round 1: 99.0 FPS, p99 step 12.1 ms" in result.out
    assert "[3/4] batch_size-8 round 1: out of memory" in result.out
    assert "best throughput: batch_size-4 (384.6 FPS, p99 step 12.5 ms)" in result.out
    assert "best within p99 12.3 ms: batch_size-1" in result.out
    assert "batch_size-16: skipped: batch_size-8 (batch size 8) ran out of memory" in result.out
    assert f"sweep directory: {only_dir(tmp_path)}" in result.out
    assert max(len(line) for line in result.out.splitlines() if "│" in line or "─" in line) <= 100


def test_json_puts_sweep_json_alone_on_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("framescope._run.run", FakeRuns())
    result = run_cli(*sweep_args(tmp_path, "--batch-size", "1,2", "--json"))
    assert result.code == 0
    assert [p["point"] for p in json.loads(result.out)["points"]] == ["batch_size-1", "batch_size-2"]


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--batch-size", "1,,2"], "--batch-size '1,,2' has an empty value"),
        (["--use-amp", "off,perhaps"], "--use-amp 'perhaps': a switch sweeps off and on"),
        (["--batch-size", "1,2", "--prefetch", "1,2"], "--prefetch takes one value in a sweep"),
        (["--batch-size", "1", "--model-name", "resnet18,resnet50"], "a sweep measures one model"),
        ([], "nothing to sweep: pass a setting with a comma list"),
        (
            ["--batch-size", "1,2", "--prep-on-gpu", "off,on"],
            "point batch_size-1_prep_on_gpu-on: --prep-on-gpu",
        ),
        (["--batch-size", "1,2", "--rounds", "0"], "--rounds 0 should be a positive integer"),
        (["--batch-size", "1,2", "--p99-budget-ms", "-5"], "--p99-budget-ms -5 should be positive"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, more: list[str], message: str
) -> None:
    runs = FakeRuns()
    monkeypatch.setattr("framescope._run.run", runs)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = run_cli(*sweep_args(tmp_path / "out", *more))
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert runs.calls == [] and not (tmp_path / "out").exists()


def test_a_bare_switch_means_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = FakeRuns()
    monkeypatch.setattr("framescope._run.run", runs)
    result = run_cli(*sweep_args(tmp_path, "--batch-size", "1,2", "--use-amp", "--pipeline", "async"))
    assert result.code == 0
    assert [r["point"] for r in read_csv(only_dir(tmp_path))] == ["batch_size-1", "batch_size-2"]
    assert all(c.model.amp and c.pipeline == "async" for c in runs.configs)


# --- verdicts ---------------------------------------------------------------------------------------------


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_counts() -> None:
    fps = [10.0, 20.0, 15.0, 30.0, 29.0]
    p99 = [5.0, 10.0, 12.0, 40.0, 50.0]
    assert pareto_front(fps, p99) == [0, 1, 3]


def test_the_knee_is_where_more_latency_stops_buying_throughput() -> None:
    p99 = [10.0, 20.0, 40.0, 80.0, 160.0]
    fps = [100.0, 180.0, 230.0, 245.0, 250.0]
    assert knee(p99, fps) == 2  # scaled: 40 ms is furthest above the line from 10 ms to 160 ms
    assert knee([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) is None  # a straight line has no knee
    assert knee([1.0, 2.0], [1.0, 5.0]) is None


def test_no_point_within_the_budget_says_which_comes_closest() -> None:
    rows: list[dict[str, Any]] = [
        {"point": "a", "status": "ok", "steady_fps": 10.0, "step_p99_ms": 80.0},
        {"point": "b", "status": "oom", "steady_fps": None, "step_p99_ms": None},
    ]
    result = verdicts(rows, 50.0)
    assert result["best_under_budget"] is None
    assert result["budget_note"].startswith("no point's p99 step latency is within 50 ms; the lowest is 80.0")
    assert result["knee"]["point"] == "a"


# --- the run summary's memory block -----------------------------------------------------------------------


def test_peak_memory_reads_the_high_water_mark_after_resetting_it(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "status").write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    meter = PeakMemory(proc)
    meter.start()
    assert (proc / "clear_refs").read_text() == "5"
    assert meter.read(cuda=False) == {
        "host_peak_mb": 200.0,
        "device_peak_mb": None,
        "host_method": "VmHWM after clear_refs",
        "device_method": None,
    }
    missing = PeakMemory(tmp_path / "nowhere")
    missing.start()
    assert missing.read(cuda=False)["host_peak_mb"] is None  # no reset, no number that means otherwise


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_peak_memory_sees_a_transient_allocation_on_this_machine() -> None:
    """In a fresh process (a long test session's heap and earlier peaks are not this test's business): a
    96 MB block written and freed between start and read shows in the peak."""
    script = (
        "from framescope.instrument.memory import PeakMemory\n"
        "meter = PeakMemory(); meter.start()\n"
        "before = meter.read(cuda=False)['host_peak_mb']\n"
        "block = b'\\x01' * (96 * 2**20); del block\n"
        "print(meter.read(cuda=False)['host_peak_mb'] - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(done.stdout) >= 90


# --- real sweeps on the CPU -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_sweep_writes_loadable_runs_whose_numbers_are_the_csvs(tmp_path: Path) -> None:
    result = run_cli(
        *sweep_args(
            tmp_path,
            "--batch-size",
            "1,2,4",
            "--torch-threads",
            "1",
            "--min-steps",
            "10",
            "--input_path",
            "synthetic:64x64",
        ),
        "--max-seconds",
        "8",
        "--prep-level",
        "simple",
    )
    assert result.code == 0, result.err
    sweep_dir = only_dir(tmp_path)
    rows = read_csv(sweep_dir)
    assert [r["point"] for r in rows] == [
        f"batch_size-{b}" for b in (1, 2, 4)
    ]  # one value (--torch-threads 1, --prep-level simple) is no axis: every point has it
    for row in rows:
        assert row["status"] in ("ok", "unstable")
        run = load_run(sweep_dir / row["run_dir"])
        summary = run.summary
        assert run.config["batch_size"] == int(row["batch_size"])
        assert float(row["steady_fps"]) == pytest.approx(summary["steady_fps"], rel=1e-3)
        step = summary["stages"]["total_step_latency_ms"]
        assert float(row["step_p99_ms"]) == pytest.approx(step["p99_ms"], rel=1e-3, abs=1e-3)
        assert float(row["exec_latency_ms"]) == pytest.approx(
            summary["stages"]["exec_latency_ms"]["mean_ms"], rel=1e-3, abs=1e-3
        )
        assert float(row["host_peak_mb"]) == pytest.approx(summary["memory"]["host_peak_mb"], rel=1e-3)
        assert row["device_peak_mb"] == ""


@pytest.mark.slow
def test_a_real_host_oom_is_a_result_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """Batch 100000 of 1024x1024 frames cannot fit in host memory: the batch-memory check refuses it before
    allocating (oom), 200000 is skipped, and batch 2 still runs."""
    result = run_cli(
        *sweep_args(
            tmp_path,
            "--batch-size",
            "100000,2,200000",
            "--torch-threads",
            "1",
            "--input_path",
            "synthetic:1024x1024",
        ),
        "--min-steps",
        "5",
        "--max-seconds",
        "3",
    )
    assert result.code == 0, result.err
    rows = {r["batch_size"]: r for r in read_csv(only_dir(tmp_path))}
    assert rows["100000"]["status"] == "oom"
    assert "needs about" in rows["100000"]["error"] and "--batch-size" in rows["100000"]["error"]
    assert rows["200000"]["status"] == "oom" and rows["200000"]["error"].startswith("skipped")
    assert rows["200000"]["rounds"] == "0"
    assert rows["2"]["status"] in ("ok", "unstable") and float(rows["2"]["steady_fps"]) > 0
    assert "out of memory" in result.out


@pytest.mark.slow
def test_a_cuda_oom_inside_a_real_run_becomes_an_oom_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.OutOfMemoryError from the model's warm-up at batch 4 (as a GPU raises it): the run turns it into
    OutOfMemory, the sweep marks the point and goes on."""
    import torch

    from framescope.pipeline import StepPlan

    real = StepPlan.warm_up

    def warm_up(self: StepPlan, batch: Any) -> Any:
        if len(batch) >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch)

    monkeypatch.setattr(StepPlan, "warm_up", warm_up)
    sweep = Sweep(
        base(tmp_path, torch_threads=1, max_steps=6),
        {"batch_size": [4, 1, 8]},
        stop=StopRule(min_steps=5, max_seconds=3),
    )
    report = sweep.run()
    status = {p["point"]: p["status"] for p in report["points"]}
    assert status == {"batch_size-4": "oom", "batch_size-1": "unstable", "batch_size-8": "oom"}


# --- the report -------------------------------------------------------------------------------------------


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    sweep = Sweep(
        base(tmp_path / "sweeps"),
        {"batch_size": [1, 2, 4, 8, 16], "use_amp": [False, True]},
        p99_budget_ms=12.6,
        run=FakeRuns(oom={16}),
    )
    sweep.run()
    assert sweep.sweep_dir is not None
    return sweep.sweep_dir


def test_the_report_of_a_sweep_draws_its_numbers(tmp_path: Path, fake_sweep: Path) -> None:
    from tests.test_report import Page, assert_offline

    result = run_cli("report", str(fake_sweep))
    assert result.code == 0, result.err
    text = (fake_sweep / "report.html").read_text()
    page = Page(text)
    assert_offline(text, page)
    assert set(page.figures) == {"s1-fps-batch", "s1-fps-p99", "s1-stages"}
    saved = json.loads((fake_sweep / "sweep.json").read_text())
    by_name = {p["point"]: p for p in saved["points"]}
    lines = {t["name"]: t for t in page.figures["s1-fps-batch"]["data"]}
    assert set(lines) == {"use_amp off", "use_amp on"}
    assert lines["use_amp off"]["x"] == [1, 2, 4, 8]  # 16 without AMP ran out of memory
    assert lines["use_amp on"]["y"] == [
        by_name[f"batch_size-{b}_use_amp-on"]["steady_fps"] for b in (1, 2, 4, 8, 16)
    ]
    front = next(t for t in page.figures["s1-fps-p99"]["data"] if t["name"] == "Pareto front")
    assert front["text"] == saved["pareto_front"]
    notes = {a["text"] for a in page.figures["s1-fps-p99"]["layout"]["annotations"]}
    assert {"best", "knee", "best within budget"} <= {part for n in notes for part in n.split(" / ")}
    stages = {t["name"]: t for t in page.figures["s1-stages"]["data"]}
    assert set(stages) == {"read", "exec"}
    assert stages["exec"]["y"][0] == by_name["batch_size-1_use_amp-off"]["exec_latency_ms"]
    assert text.count('class="badge failed">oom<') == 1


@pytest.mark.slow
@pytest.mark.usefixtures("browser")
def test_chromium_draws_every_sweep_chart_offline(tmp_path: Path, fake_sweep: Path) -> None:
    from tests.test_report import assert_draws_offline

    assert_draws_offline(tmp_path, write_report([fake_sweep], tmp_path / "report.html"), "sweep-report.png")
