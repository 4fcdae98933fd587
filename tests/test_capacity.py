"""``framescope capacity``: the camera search (doubling, then bisection), each trial's stop rule and verdict
(exact binomial tests), capacity.json/csv, the decode-bound note and the report, on scripted runs; then real
searches of mobilenet_v3_small on a replayed clip."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import run_cli
from tests.test_cli import one_line_error
from tests.test_report import browser  # noqa: F401  (a fixture)

from framescope.capacity import (
    CAPACITY_CSV,
    CAPACITY_JSON,
    CameraSearch,
    Capacity,
    Setting,
    TailRule,
    TailWatch,
    judge,
    load_capacity,
)
from framescope.config import RunConfig
from framescope.errors import ConfigError
from framescope.instrument import FakeClock
from framescope.records import Row, RunResult

# --- the search ------------------------------------------------------------------------------------------


def search_for(limit: int, ceiling: int = 64) -> tuple[list[int], CameraSearch]:
    search, tried = CameraSearch(ceiling=ceiling), []
    while (n := search.next_count()) is not None:
        tried.append(n)
        search.record(n, n <= limit)
    return tried, search


def test_doubling_then_bisection_finds_the_largest_count_that_passes() -> None:
    tried, search = search_for(5)
    assert tried == [1, 2, 4, 8, 6, 5] and search.best == 5 and search.first_failed == 6
    tried, search = search_for(12)
    assert tried == [1, 2, 4, 8, 16, 12, 14, 13] and search.best == 12
    for limit in range(0, 70):  # every answer, found exactly, in about 2 log2(answer) trials
        tried, search = search_for(limit)
        assert search.best == min(limit, 64)
        assert len(tried) <= 2 * max(1, limit).bit_length() + 1


def test_the_search_stops_at_zero_or_at_its_ceiling() -> None:
    tried, search = search_for(0)
    assert tried == [1] and search.best == 0 and not search.at_ceiling
    tried, search = search_for(100, ceiling=10)
    assert tried == [1, 2, 4, 8, 10] and search.best == 10 and search.at_ceiling


# --- one trial: when it stops, and its verdict -----------------------------------------------------------


def row(frames: int, oldest_ms: float, newest_ms: float, dropped: int = 0, warmup: int = 0) -> Row:
    return Row(
        frames=frames, latency_ms=oldest_ms, latency_min_ms=newest_ms, dropped_frames=dropped, warmup=warmup,
        total_step_latency_ms=10.0,
    )  # fmt: skip


def test_a_trial_stops_once_its_pass_is_shown_with_confidence() -> None:
    clock = FakeClock()
    rule = TailRule(budget_ms=100.0, min_seconds=5.0, max_seconds=60.0)
    assert rule.frames_needed == 299
    watch = TailWatch(rule, clock=clock)
    watch.on_step(row(50, 500.0, 500.0, warmup=1))  # warm-up: not counted
    for _ in range(29):
        watch.on_step(row(10, 40.0, 20.0))
    clock.advance(6.0)
    assert not watch.stop_requested()  # 290 frames: too few to show a p99, however fast
    watch.on_step(row(10, 40.0, 20.0))
    assert watch.stop_requested() and watch.stable and watch.early == "pass"


def test_a_trial_stops_early_on_a_failure_and_never_before_its_minimum() -> None:
    clock = FakeClock()
    watch = TailWatch(TailRule(budget_ms=100.0, min_seconds=5.0), clock=clock)
    for _ in range(10):
        watch.on_step(row(4, 300.0, 150.0))  # every frame late, even the newest
    clock.advance(1.0)
    assert not watch.stop_requested()  # the minimum time first
    clock.advance(5.0)
    assert watch.stop_requested() and watch.early == "fail"
    drops = TailWatch(TailRule(budget_ms=100.0, min_seconds=0.0), clock=clock)
    for _ in range(10):
        drops.on_step(row(4, 10.0, 5.0, dropped=2))  # on time, but a third of the frames dropped
    assert drops.stop_requested() and drops.early == "fail"


def test_an_undecided_trial_runs_to_its_time_cap() -> None:
    clock = FakeClock()
    watch = TailWatch(TailRule(budget_ms=100.0, min_seconds=0.0, max_seconds=30.0), clock=clock)
    for _ in range(10):
        watch.on_step(row(100, 101.0, 1.0))  # one frame in a hundred late: exactly the share allowed
    assert watch.late == pytest.approx(10.0)
    clock.advance(10.0)
    assert not watch.stop_requested()
    clock.advance(25.0)
    assert watch.stop_requested() and not watch.stable and watch.early is None


def test_a_batchs_late_frames_are_estimated_between_its_newest_and_oldest() -> None:
    from framescope.capacity._trial import late_frames

    assert late_frames(10, 90.0, 10.0, 100.0) == 0.0  # the oldest on time: all on time
    assert late_frames(10, 300.0, 150.0, 100.0) == 10.0  # the newest late: all late
    assert late_frames(10, 150.0, 50.0, 100.0) == pytest.approx(5.0)  # half the span past the budget
    assert late_frames(1, 120.0, None, 100.0) == 1.0 and late_frames(3, None, None, 100.0) == 0.0


def summary_with(frames: int, late: int, dropped: int = 0, status: str = "complete") -> dict[str, Any]:
    return {
        "status": status,
        "wall_time_s": 30.0,
        "sources": {
            "overall": {
                "frames": frames, "dropped": dropped, "on_time_frames": frames - late,
                "latency_p50_ms": 40.0, "latency_p99_ms": 90.0, "on_time_fps": (frames - late) / 30.0,
            }
        },
    }  # fmt: skip


def test_the_verdict_counts_every_frame_against_the_budget() -> None:
    rule = TailRule(budget_ms=100.0)
    passed = judge(summary_with(1000, 2), rule)
    assert passed["verdict"] == "pass" and passed["confident"] and passed["late_share"] == 0.002
    failed = judge(summary_with(1000, 60), rule)
    assert failed["verdict"] == "fail" and failed["confident"]
    assert "60 of 1000 frames later than 100 ms (6.0 %, at most 1 % allowed)" in failed["why"]
    dropped = judge(summary_with(1000, 0, dropped=100), rule)
    assert dropped["verdict"] == "fail" and "100 of 1100 frames dropped (9.1 %" in dropped["why"]
    unsure = judge(summary_with(200, 1), rule)  # too few frames: the point estimate, said so
    assert unsure["verdict"] == "pass" and not unsure["confident"]
    broken = judge({"status": "failed", "error": "decoder died", "sources": {}}, rule)
    assert broken["verdict"] == "fail" and broken["why"] == "decoder died"


# --- a whole search on scripted runs ---------------------------------------------------------------------


class FakeCameras:
    """framescope.run stand-in: up to ``limit`` cameras every frame is on time; past it 10 % are late."""

    def __init__(self, limit: int, *, work_ms: float = 8.0) -> None:
        self.limit, self.work_ms = limit, work_ms
        self.configs: list[RunConfig] = []

    def __call__(self, config: RunConfig, observer: Any = None) -> RunResult:
        self.configs.append(config)
        run_dir = Path(config.output_dir) / str(config.run_name)
        run_dir.mkdir(parents=True)
        cameras = config.source.cameras
        frames = 400 * cameras
        late = 0 if cameras <= self.limit else frames // 10
        summary = summary_with(frames, late)
        summary["sources"]["overall"]["latency_p99_ms"] = 20.0 * cameras
        summary["batching"] = {"max_delay_ms": 100.0}
        rows = pd.DataFrame(
            {
                "warmup": [1, 0, 0], "profiled": [0, 0, 0], "frames": [cameras] * 3,
                "total_step_latency_ms": [50.0, 30.0 + self.work_ms * cameras, 30.0 + self.work_ms * cameras],
                "read_latency_ms": [20.0, 30.0, 30.0],
            }
        )  # fmt: skip
        if observer is not None:
            observer.stable = True
        return RunResult(run_dir, config.to_dict(), {}, rows, summary)


def base(tmp_path: Path, **flat: Any) -> RunConfig:
    return RunConfig.from_flat(
        **{"model_name": "mobilenet_v3_small", "input_path": "synthetic:64x64:40", "source_fps": 10.0,
           "output_dir": str(tmp_path), **flat}
    )  # fmt: skip


def test_a_search_writes_every_trial_and_the_answer(tmp_path: Path) -> None:
    runs = FakeCameras(limit=5)
    capacity = Capacity(base(tmp_path), TailRule(budget_ms=200.0), run=runs, probe_decode=False)
    report = capacity.run()
    assert report["cameras"] == 5 and report["first_failed"] == 6 and report["done"] and report["confirmed"]
    assert [t["cameras"] for t in report["trials"]] == [1, 2, 4, 8, 6, 5, 5, 5]
    assert [t["phase"] for t in report["trials"]] == ["search"] * 6 + [
        "confirm"
    ] * 2  # the answer, twice more
    assert [t["verdict"] for t in report["trials"]] == ["pass"] * 3 + ["fail"] * 2 + ["pass"] * 3
    config = runs.configs[-1]  # every trial: N looped cameras, batched dynamically, judged on the budget
    assert config.source.cameras == 5 and config.source.loop and config.batching == "dynamic"
    assert config.max_batch == 5 and config.deadline_ms == 200.0 and config.max_steps is None
    assert report["best_setting"] == {"setting": "batch-cameras", "max_batch": 5, "max_delay_ms": 100.0}
    capacity_dir = Path(report["capacity_dir"])
    saved = json.loads((capacity_dir / CAPACITY_JSON).read_text())
    assert saved["cameras"] == 5 and saved["budget_ms"] == 200.0 and len(saved["trials"]) == 8
    trial = saved["trials"][3]
    assert {"cameras", "p99_ms", "drop_share", "verdict", "run_dir"} <= trial.keys()
    assert trial["cameras"] == 8 and trial["p99_ms"] == 160.0 and trial["verdict"] == "fail"
    assert Path(trial["run_dir"]) == capacity_dir / "trials" / "cameras-8" / "batch-cameras" / "round-1"
    csv = pd.read_csv(capacity_dir / CAPACITY_CSV)
    assert list(csv["cameras"]) == [1, 2, 4, 8, 6, 5, 5, 5] and list(csv["verdict"])[-1] == "pass"
    assert list(csv["phase"])[-2:] == ["confirm", "confirm"]
    confirm = Path(saved["trials"][-1]["run_dir"])
    assert confirm == capacity_dir / "trials" / "cameras-5-confirm" / "batch-cameras" / "round-2"
    assert load_capacity(capacity_dir)["cameras"] == 5


class FlakyCameras(FakeCameras):
    """Passes up to ``limit`` in the search, but fails the confirmation runs at ``limit``."""

    def __call__(self, config: RunConfig, observer: Any = None) -> RunResult:
        confirming = "-confirm" in config.output_dir
        if confirming and config.source.cameras == self.limit:
            self.limit -= 1
            try:
                return super().__call__(config, observer)
            finally:
                self.limit += 1
        return super().__call__(config, observer)


def test_an_answer_that_fails_its_confirmation_is_searched_below(tmp_path: Path) -> None:
    capacity = Capacity(base(tmp_path), TailRule(budget_ms=200.0), run=FlakyCameras(5), probe_decode=False)
    report = capacity.run()
    assert report["cameras"] == 4 and report["confirmed"] and report["first_failed"] == 5
    confirms = [(t["cameras"], t["verdict"]) for t in report["trials"] if t["phase"] == "confirm"]
    assert confirms == [(5, "fail"), (4, "pass"), (4, "pass")]  # one failure settles it: no second run at 5
    assert any(
        "5 cameras passed the search's trial but failed a confirmation run" in n for n in report["notes"]
    )


class FaultyCameras(FakeCameras):
    """Runs whose allocator paid glibc's page faults from 4 cameras on (a finding in the summary)."""

    def __call__(self, config: RunConfig, observer: Any = None) -> RunResult:
        result = super().__call__(config, observer)
        if config.source.cameras >= 4:
            result.summary["findings"] = [{"id": "allocator_page_faults", "severity": "warning"}]
        return result


def test_trials_that_paid_glibc_page_faults_are_named_with_the_fix(tmp_path: Path) -> None:
    capacity = Capacity(base(tmp_path), TailRule(budget_ms=200.0), run=FaultyCameras(5), probe_decode=False)
    report = capacity.run()
    assert [t["allocator_page_faults"] for t in report["trials"][:4]] == [False, False, True, True]
    (note,) = [n for n in report["notes"] if "allocator_page_faults" in n]
    assert (
        note.startswith("trials at 4, 5, 6, 8 camera(s) paid glibc's page faults")
        and "--malloc retain" in note
    )
    quiet = Capacity(base(tmp_path), TailRule(budget_ms=200.0), run=FakeCameras(5), probe_decode=False).run()
    assert not any("allocator_page_faults" in n for n in quiet["notes"])


def test_every_setting_is_tried_and_the_best_named(tmp_path: Path) -> None:
    runs = FakeCameras(limit=3)
    settings = [Setting(max_batch=2), Setting(max_batch=8, max_delay_ms=50.0)]
    report = Capacity(
        base(tmp_path), TailRule(budget_ms=200.0), settings=settings, run=runs, probe_decode=False
    ).run()
    assert report["cameras"] == 3
    assert {(c.source.cameras, c.max_batch) for c in runs.configs} >= {(3, 2), (3, 8)}
    assert {c.max_delay_ms for c in runs.configs if c.max_batch == 8} == {50.0}
    assert report["best_setting"]["setting"] in ("batch-2", "batch-8_delay-50ms")


def test_the_answer_says_when_decoding_bounds_it(tmp_path: Path) -> None:
    cheap = FakeCameras(limit=4, work_ms=0.0)  # the pipeline's own work: nothing; decoding: measured
    report = Capacity(
        base(tmp_path, input_path="synthetic:1280x720:60"), TailRule(budget_ms=200.0), run=cheap
    ).run()
    decode, limit = report["decode"], report["limit"]
    assert decode["ms_per_frame"] > 0 and decode["width"] == 1280 and decode["frames_timed"] >= 50
    assert limit["bound_by"] == "decoding" and limit["pipeline_ms_per_frame"] == 0.0
    assert any(note.startswith("bounded by decoding") for note in report["notes"])
    busy = FakeCameras(limit=4, work_ms=1000.0)
    other = Capacity(
        base(tmp_path, input_path="synthetic:64x64:60"), TailRule(budget_ms=200.0), run=busy
    ).run()
    assert other["limit"]["bound_by"] == "model"
    assert not any(note.startswith("bounded by decoding") for note in other["notes"])


def test_ctrl_c_keeps_the_trials_finished(tmp_path: Path) -> None:
    runs = FakeCameras(limit=50)
    capacity = Capacity(base(tmp_path), TailRule(budget_ms=200.0), run=runs, probe_decode=False)
    seen: list[int] = []

    def on_trial(trial: dict[str, Any]) -> None:
        seen.append(trial["cameras"])
        if len(seen) == 3:
            capacity.request_stop()

    capacity.on_trial = on_trial
    report = capacity.run()
    assert report["interrupted"] and not report["done"] and report["cameras"] == 4
    assert len(load_capacity(report["capacity_dir"])["trials"]) == 3


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"source_fps": None}, "pass --source-fps N"),
        ({"input_path": "rtsp://127.0.0.1:1/cam"}, "is a live input"),
        ({"model_name": "resnet18,mobilenet_v3_small"}, "capacity measures one model"),
    ],
)
def test_what_capacity_cannot_search_is_refused(tmp_path: Path, flat: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Capacity(base(tmp_path, **flat), TailRule(budget_ms=100.0), run=FakeCameras(1))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--p99-budget-ms", "100"], "pass --source-fps N"),
        (["--p99-budget-ms", "100", "--source-fps", "10", "--max-batch", "4,x"], "'x' is not a number"),
        (["--p99-budget-ms", "-5", "--source-fps", "10"], "--p99-budget-ms -5 should be positive"),
        (["--p99-budget-ms", "100", "--source-fps", "10", "--max-drop-pct", "150"], "--max-drop-pct 150"),
        (["--p99-budget-ms", "100", "--source-fps", "10", "--max-cameras", "0"], "--max-cameras 0"),
    ],
)
def test_bad_capacity_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(
        "capacity", "--model-name", "mobilenet_v3_small", "--input_path", "synthetic:64x64:10",
        "--output-dir", str(tmp_path), *args,
    )  # fmt: skip
    assert result.code == 2
    assert message in one_line_error(result.err)
    assert not any(tmp_path.iterdir())  # refused before a capacity directory was made


def test_the_report_draws_a_capacity_search(tmp_path: Path) -> None:
    from framescope.report import write_report

    report = Capacity(
        base(tmp_path), TailRule(budget_ms=200.0), run=FakeCameras(limit=5), probe_decode=False
    ).run()
    page = write_report([report["capacity_dir"]], tmp_path / "capacity.html").read_text()
    assert "Capacity: mobilenet_v3_small" in page
    assert "Frame latency (p99) against cameras" in page and "On-time FPS against cameras" in page
    assert "5 camera(s) within p99 200 ms" in page
    assert page.count('<span class="badge complete">pass</span>') == 6
    assert page.count('<span class="badge failed">fail</span>') == 2
    from tests.test_report import Page

    figures = Page(page).figures
    latency, on_time = figures["c1-latency"], figures["c1-on-time"]
    assert latency["layout"]["yaxis"].get("type") != "log"  # a log axis took the budget label for 10**200
    assert latency["layout"]["shapes"][0]["y0"] == 200.0
    (label,) = on_time["layout"]["annotations"]  # on the log camera axis, at log10(5)
    assert label["text"] == "capacity 5" and label["x"] == pytest.approx(math.log10(5))


# --- real searches ---------------------------------------------------------------------------------------


def test_a_real_search_of_two_cameras_on_the_cli(clip: Path, tmp_path: Path) -> None:
    """Small and quick: a generous budget, two cameras at most, so the answer is the ceiling."""
    result = run_cli(
        "capacity", "--model-name", "mobilenet_v3_small", "--input_path", str(clip), "--source-fps", "10",
        "--p99-budget-ms", "1000", "--max-cameras", "2", "--min-seconds", "1", "--max-seconds", "40",
        "--confirm-rounds", "0", "--torch-threads", "1",  # one thread: steady beside another busy process
        "--output-dir", str(tmp_path), "--run-name", "cap", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["cameras"] == 2 and report["at_ceiling"]
    assert [t["cameras"] for t in report["trials"]] == [1, 2]
    for trial in report["trials"]:
        assert trial["verdict"] == "pass" and trial["confident"], trial
        assert trial["frames"] >= 299  # enough for the p99's verdict with 95 % confidence
        run = Path(trial["run_dir"])
        summary = json.loads((run / "summary.json").read_text())
        assert summary["sources"]["count"] == trial["cameras"]
        assert summary["sources"]["overall"]["frames"] == trial["frames"]
        assert summary["source"]["extra"]["looped"] is True  # a 36-frame clip, replayed as long as needed
    assert "capacity: 2 camera(s) of mobilenet_v3_small at 10 FPS within p99 1000 ms" in result.err
    assert "the --max-cameras ceiling" in result.err
    assert report["decode"]["ms_per_frame"] > 0


@pytest.mark.slow
def test_a_real_search_finds_a_count_that_meets_the_budget_and_one_that_does_not(
    clip: Path, tmp_path: Path
) -> None:
    """mobilenet_v3_small at 30 FPS a camera within 100 ms: the answer's trial passed, the next count's
    failed, and an independent run at 1.5x the answer misses the budget."""
    result = run_cli(
        "capacity", "--model-name", "mobilenet_v3_small", "--input_path", str(clip), "--source-fps", "30",
        "--p99-budget-ms", "100", "--max-cameras", "32", "--max-seconds", "20", "--confirm-rounds", "1",
        "--confirm-seconds", "10",
        "--output-dir", str(tmp_path), "--run-name", "cap", "--json", "--report",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    answer = report["cameras"]
    assert 1 <= answer < 32 and report["first_failed"] == answer + 1
    by_count = {t["cameras"]: t for t in report["trials"]}
    assert by_count[answer]["verdict"] == "pass" and by_count[answer + 1]["verdict"] == "fail"
    assert (tmp_path / "cap" / "report.html").is_file()
    over = max(answer + 1, round(1.5 * answer))
    check = subprocess.run(
        [sys.executable, "-m", "framescope", "run", "--model-name", "mobilenet_v3_small", "--input_path",
         str(clip), "--source-fps", "30", "--loop", "--cameras", str(over), "--batching", "dynamic",
         "--max-batch", str(over), "--deadline-ms", "100", "--max-steps", "400", "--progress", "none",
         "--output-dir", str(tmp_path), "--run-name", "over"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    overall = json.loads((tmp_path / "over" / "summary.json").read_text())["sources"]["overall"]
    late = overall["frames"] - overall["on_time_frames"]
    published = overall["frames"] + overall["dropped"]
    assert late / overall["frames"] > 0.01 or overall["dropped"] / published > 0.01, overall


@pytest.mark.slow
@pytest.mark.usefixtures("browser")
def test_chromium_draws_the_capacity_charts_offline(tmp_path: Path) -> None:
    from tests.test_report import assert_draws_offline

    from framescope.report import write_report

    report = Capacity(
        base(tmp_path), TailRule(budget_ms=200.0), run=FakeCameras(limit=5), probe_decode=False
    ).run()
    path = write_report([report["capacity_dir"]], tmp_path / "capacity.html")
    assert len(assert_draws_offline(tmp_path, path, "capacity-report.png", height=1800)) == 2


def test_a_clip_that_cannot_be_read_is_refused_before_any_file(tmp_path: Path) -> None:
    result = run_cli(
        "capacity", "--model-name", "mobilenet_v3_small", "--input_path", str(tmp_path / "nope.mp4"),
        "--source-fps", "10", "--p99-budget-ms", "100", "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.code == 2
    assert "does not exist" in one_line_error(result.err)
    assert not (tmp_path / "out").exists()
