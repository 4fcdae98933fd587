from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framescope.errors import FramescopeError, OutputError
from framescope.records import (
    COLUMNS,
    SEED_COLUMNS,
    RunWriter,
    ensure_writable_dir,
    load_run,
    metrics_filename,
    read_rows,
    summarize,
)


def make_rows(exec_ms: list[float], warmup: int = 0, frames: int = 4) -> pd.DataFrame:
    rows = []
    start = 0.0
    for step, ms in enumerate(exec_ms):
        total = ms + 10.0
        rows.append(
            {
                "step": step,
                "read_latency_ms": 6.0,
                "prep_latency_ms": 4.0,
                "exec_latency_ms": ms,
                "total_step_latency_ms": total,
                "frames": frames,
                "warmup": int(step < warmup),
                "profiled": 0,
                "step_start_s": start,
            }
        )
        start += total / 1000.0
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_seed_columns_come_first_in_the_seed_order() -> None:
    assert COLUMNS[:6] == (
        "step",
        "read_latency_ms",
        "prep_latency_ms",
        "exec_latency_ms",
        "total_step_latency_ms",
        "loss",
    )
    assert COLUMNS[:6] == SEED_COLUMNS
    assert metrics_filename("resnet50", 1234) == "M_resnet50_P_1234_metrics.csv"


def test_summary_percentiles_leave_warmup_out() -> None:
    exec_ms = [500.0, 400.0] + [float(v) for v in range(10, 110)]  # two slow warm-up steps
    summary = summarize(make_rows(exec_ms, warmup=2))
    stats = summary["stages"]["exec_latency_ms"]
    steady = np.arange(10, 110, dtype=float)
    assert stats["count"] == 100
    assert stats["mean_ms"] == pytest.approx(steady.mean())
    assert stats["p50_ms"] == pytest.approx(np.percentile(steady, 50))
    assert stats["p95_ms"] == pytest.approx(np.percentile(steady, 95))
    assert stats["p99_ms"] == pytest.approx(np.percentile(steady, 99))
    assert stats["max_ms"] == 109.0
    assert summary["excluded_steps"] == {"warmup": 2, "profiled": 0}
    assert summary["steady_frames"] == 400 and summary["frames"] == 408
    steady_seconds = (steady + 10).sum() / 1000
    assert summary["steady_fps"] == pytest.approx(400 / steady_seconds)
    wall = sum(v + 10 for v in exec_ms) / 1000
    assert summary["wall_time_s"] == pytest.approx(wall)
    assert summary["avg_fps"] == pytest.approx(408 / wall)
    assert summary["pace_stage"] == "exec_latency_ms"
    assert summary["stage_sum_over_total"] == pytest.approx(1.0)


def test_summary_of_a_run_that_is_all_warmup_says_so() -> None:
    summary = summarize(make_rows([5.0, 6.0], warmup=5))
    assert summary["steady_steps"] == 2
    assert "warm-up" in summary["note"]


def test_summary_of_nothing() -> None:
    assert summarize(pd.DataFrame(columns=list(COLUMNS)))["steps"] == 0


def test_rows_are_on_disk_as_soon_as_they_are_written(tmp_path: Path) -> None:
    writer = RunWriter.create(tmp_path, "run", "M_x_P_1_metrics.csv")
    writer.open_rows()
    writer.write_row({"step": 0, "read_latency_ms": 1.23456, "total_step_latency_ms": 2.0, "loss": None})
    # Read while the writer is still open, as another process would after kill -9.
    with open(writer.csv_path, newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == list(COLUMNS)
    assert lines[1][:6] == ["0", "1.2346", "", "", "2.0000", ""]
    writer.close()


def test_run_directory_is_never_reused(tmp_path: Path) -> None:
    RunWriter.create(tmp_path, "run", "m.csv")
    with pytest.raises(OutputError, match="already exists; pass another --run-name"):
        RunWriter.create(tmp_path, "run", "m.csv")
    generated = [RunWriter.create(tmp_path, "auto", "m.csv", unique=True).run_dir.name for _ in range(3)]
    assert generated == ["auto", "auto-2", "auto-3"]


def test_unusable_output_directories(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        ensure_writable_dir(a_file)
    with pytest.raises(OutputError, match="cannot create --output-dir"):
        ensure_writable_dir(a_file / "sub")


def test_a_line_cut_by_a_kill_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "M_m_P_1_metrics.csv"
    good = ",".join(["0", "1", "2", "3", "6", ""] + [""] * (len(COLUMNS) - 6))
    frames_index = COLUMNS.index("frames")
    cells = good.split(",")
    cells[frames_index] = "4"
    path.write_text(",".join(COLUMNS) + "\n" + ",".join(cells) + "\n" + "1,1.5,2")
    rows = read_rows(path)
    assert len(rows) == 1 and rows["frames"].iloc[0] == 4


def test_load_run_of_a_killed_run_recomputes_the_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    make_rows([10.0, 20.0, 30.0]).to_csv(run_dir / "M_m_P_9_metrics.csv", index=False)
    (run_dir / "config.yaml").write_text("batch_size: 4\n")
    result = load_run(run_dir)
    assert result.status == "incomplete"
    assert result.summary["steps"] == 3
    assert result.config == {"batch_size": 4}
    assert len(result.rows) == 3


def test_load_run_with_a_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    make_rows([10.0]).to_csv(run_dir / "M_m_P_9_metrics.csv", index=False)
    (run_dir / "summary.json").write_text(json.dumps({"status": "complete", "steady_fps": 12.5}))
    result = load_run(run_dir)
    assert (result.status, result.fps) == ("complete", 12.5)


def test_load_run_of_something_else(tmp_path: Path) -> None:
    with pytest.raises(FramescopeError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(FramescopeError, match="holds no M_"):
        load_run(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FramescopeError, match="is a file, not a run directory"):
        load_run(tmp_path / "file")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("summary.json", "{not json", "summary.json could not be read"),
        ("summary.json", "[1, 2]", "summary.json does not hold a mapping"),
        ("config.yaml", "a: [unclosed", "config.yaml could not be read"),
        ("system.json", b"\xff\xfe", "system.json could not be read"),
    ],
)
def test_a_damaged_run_directory_is_one_line(
    tmp_path: Path, name: str, content: str | bytes, problem: str
) -> None:
    make_rows([10.0]).to_csv(tmp_path / "M_m_P_9_metrics.csv", index=False)
    target = tmp_path / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(FramescopeError, match=problem) as caught:
        load_run(tmp_path)
    assert "\n" not in str(caught.value) and "run the job again" in str(caught.value)


def _timing(step: int, **ms: float) -> object:
    from framescope.pipeline import FramesInfo, StepTiming

    total = ms.pop("total")
    return StepTiming(
        step=step,
        samples={stage: value / 1000.0 for stage, value in ms.items()},
        frames=FramesInfo(count=4, first_index=4 * step, first_pts_s=None, last_pts_s=None),
        total_s=total / 1000.0,
        warmup=False,
        profiled=False,
        cpu_time_s=0.0,
        step_start_s=step * total / 1000.0,
    )


def test_a_killed_async_run_is_summarised_as_an_async_run(tmp_path: Path) -> None:
    """The producer's stages (read 20 + decode 25 + prep 20 ms) outweigh the model's (exec 40 ms) and run
    beside it: the async pace is decoding, the slowest stage of the slower side. Summarised as a sync run (the
    old default of the killed-run path), the pace would be exec, the slowest stage overall."""
    from framescope.records import RunRecorder

    recorder = RunRecorder.create(tmp_path, "killed", "m", batch_size=4)
    recorder.start(config={"pipeline": "async"}, system={}, context={"pipeline": "async", "batch_size": 4})
    for step in range(6):
        recorder.record(
            _timing(step, read=20.0, decode=25.0, prep=20.0, exec=40.0, queue_wait=25.0, total=66.0)
        )
    recorder.close()  # no summary: the process was killed here
    run = load_run(tmp_path / "killed")
    assert run.status == "incomplete" and run.summary["pipeline"] == "async"
    assert run.summary["pace_stage"] == "decode_latency_ms"
    assert run.summary["stage_sum_over_total"] > 1.5  # the stages overlapped
    assert summarize(run.rows, "sync")["pace_stage"] == "exec_latency_ms"  # what the bug reported


def test_a_finished_run_and_its_killed_twin_get_the_same_statistics(tmp_path: Path) -> None:
    from framescope.records import RunRecorder

    runs = {}
    for name in ("finished", "killed"):
        recorder = RunRecorder.create(tmp_path, name, "m", batch_size=4)
        recorder.start(config={}, system={}, context={"pipeline": "sync", "batch_size": 4})
        for step in range(5):
            recorder.record(_timing(step, read=5.0, exec=10.0 + step, total=15.0 + step))
        if name == "finished":
            recorder.write_summary(
                recorder.summarize(recorder.frame(), status="complete", error=None, facts={})
            )
        recorder.close()
        runs[name] = load_run(tmp_path / name).summary
    for key in ("steps", "stages", "pace_stage", "steady_fps", "stage_sum_over_total"):
        assert runs["finished"][key] == runs["killed"][key], key
