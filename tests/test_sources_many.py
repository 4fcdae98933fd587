"""Several sources in one run: round-robin fairness, dynamic batches (at max-batch or max-delay, whichever
comes first), the offsets of ``--cameras`` replicas, settings, and one real run of 4 replayed cameras."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.conftest import run_cli
from tests.test_cli import one_line_error

import framescope
from framescope.config import RunConfig, SourceConfig
from framescope.errors import ConfigError
from framescope.instrument.clock import FakeClock
from framescope.pipeline import Batcher, round_robin
from framescope.sources import Frame, LiveSource, ManySources, make_source, replica_offsets

# --- a scripted set of sources on a fake clock ---------------------------------------------------------


class ScriptedArrivals:
    """Frames that arrive at scripted times per source; ``wait`` moves the fake clock to the next arrival
    (or the time-out), as a real wait would."""

    def __init__(self, clock: FakeClock, arrivals: list[list[float]], *, ends: bool = True) -> None:
        self.clock = clock
        self.pending = [deque(times) for times in arrivals]
        self.buffers: list[deque[Frame]] = [deque() for _ in arrivals]
        self.generation = 0
        self.ends = ends
        self.waits: list[float] = []
        self.kept: list[int] = []
        self._release()

    def _release(self) -> None:
        for source, times in enumerate(self.pending):
            while times and times[0] <= self.clock.now:
                due = times.popleft()
                frame = Frame(np.zeros((2, 2, 3), np.uint8), 0, None, arrival_s=due, due_s=due, source=source)
                self.buffers[source].append(frame)
                self.generation += 1

    @property
    def ended(self) -> bool:
        return self.ends and not any(self.pending) and not any(self.buffers)

    def waiting(self) -> list[int]:
        return [len(b) for b in self.buffers]

    def oldest_arrival_s(self) -> float | None:
        heads = [b[0].arrival_s for b in self.buffers if b]
        return min(heads) if heads else None

    def take(self, source: int, count: int) -> list[Frame]:
        buffer = self.buffers[source]
        return [buffer.popleft() for _ in range(min(count, len(buffer)))]

    def wait(self, seen: int, timeout_s: float) -> None:
        self.waits.append(timeout_s)
        upcoming = [times[0] for times in self.pending if times]
        target = self.clock.now + timeout_s
        if upcoming:
            target = min(target, *upcoming)
        self.clock.now = max(self.clock.now, target)
        self._release()

    def skip_to_newest(self, keep: int) -> None:
        self.kept.append(keep)


def sources_of(frames: list[Frame]) -> list[int]:
    return [f.source for f in frames]


def test_round_robin_takes_one_frame_per_source_in_turn() -> None:
    assert round_robin([5, 5, 5, 5], 2, 0) == ([1, 1, 0, 0], 2)
    assert round_robin([5, 5, 5, 5], 2, 2) == ([0, 0, 1, 1], 0)
    assert round_robin([9, 0, 1], 4, 0) == ([3, 0, 1], 1)  # a source with nothing waiting is passed over
    assert round_robin([1, 1], 8, 1) == ([1, 1], 1)  # fewer waiting than room: all of them
    assert round_robin([0, 0], 3, 0) == ([0, 0], 0)


def test_fixed_batches_starve_no_source_when_more_frames_wait_than_fit() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[0.0] * 20, [0.0] * 20, [0.0] * 20, [0.0] * 20])
    batcher = Batcher("fixed", 4, 0.1, clock)
    served = [0, 0, 0, 0]
    for _ in range(6):  # batches of 3 from 4 busy sources: the turn moves on
        for source in sources_of(batcher.frames(arrivals, 3)):
            served[source] += 1
    assert served == [5, 5, 4, 4]  # 18 frames, no source more than one frame behind another


def test_fixed_batch_waits_until_full_and_ends_short_at_the_end() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[0.0, 0.2], [0.1]])
    batcher = Batcher("fixed", 4, 0.1, clock)
    frames = batcher.frames(arrivals, 4)
    assert len(frames) == 3 and clock.now == pytest.approx(0.2)  # the inputs ended: a short last batch
    assert batcher.frames(arrivals, 4) == []


def test_dynamic_batch_forms_at_max_batch_before_the_delay() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[0.00, 0.01, 0.02], [0.005, 0.015]])
    batcher = Batcher("dynamic", 4, 0.100, clock)
    frames = batcher.frames(arrivals, 1)
    assert len(frames) == 4 and clock.now == pytest.approx(0.015)  # four waiting at 15 ms: go
    assert sorted(sources_of(frames)) == [0, 0, 1, 1]
    assert arrivals.kept == [4]  # each source that fell behind keeps its newest share of max-batch


def test_dynamic_batch_forms_at_max_delay_after_the_oldest_frame() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[0.0, 0.03], [0.02, 0.5]])
    batcher = Batcher("dynamic", 8, 0.050, clock)
    frames = batcher.frames(arrivals, 1)
    assert clock.now == pytest.approx(0.050)  # the oldest (0 ms) waited 50 ms: go with what is there
    assert sorted(sources_of(frames)) == [0, 0, 1]
    assert max(arrivals.waits) <= 0.5


def test_dynamic_batches_are_fair_when_more_frames_wait_than_fit() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[0.0] * 10, [0.0] * 10, [0.0] * 10])
    batcher = Batcher("dynamic", 2, 0.050, clock)
    served = [0, 0, 0]
    for _ in range(6):
        for source in sources_of(batcher.frames(arrivals, 1)):
            served[source] += 1
    assert served == [4, 4, 4]


def test_dynamic_batch_waits_for_a_first_frame() -> None:
    clock = FakeClock()
    arrivals = ScriptedArrivals(clock, [[1.2], [1.25]])
    frames = Batcher("dynamic", 4, 0.1, clock).frames(arrivals, 1)
    assert clock.now == pytest.approx(1.3) and len(frames) == 2


# --- replicas and settings -----------------------------------------------------------------------------


def test_camera_replicas_start_spread_over_one_frame_interval() -> None:
    assert replica_offsets(4, 10.0) == pytest.approx([0.0, 0.025, 0.05, 0.075])
    assert replica_offsets(3, None) == [0.0, 0.0, 0.0]  # a stream's frames come when they come


def test_cameras_make_offset_live_sources_with_their_ids(clip: Path) -> None:
    many = make_source(SourceConfig(input_path=str(clip), source_fps=10, cameras=3), batch_size=2)
    assert isinstance(many, ManySources)
    assert [s.source_id for s in many.sources] == [0, 1, 2]
    assert [s.start_offset_s for s in many.sources] == pytest.approx([0.0, 1 / 30, 2 / 30])
    assert all(isinstance(s, LiveSource) and s.pace_fps == 10 for s in many.sources)


def test_input_path_given_several_times_or_as_a_list(clip: Path) -> None:
    one = RunConfig.from_flat(model_name="m", input_path=[str(clip)])
    assert one.source.input_path == str(clip)  # a single --input_path stays one string
    two = RunConfig.from_dict({"model": {"name": "m"}, "source": {"input_path": ["a.mp4", "b.mp4"]}})
    assert two.source.inputs == ("a.mp4", "b.mp4") and two.source.source_count == 2
    assert RunConfig.from_dict(yaml.safe_load(two.to_yaml())).source.inputs == ("a.mp4", "b.mp4")


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"cameras": 0}, r"cameras = 0 should be a positive integer"),
        ({"batching": "greedy"}, r"batching = 'greedy' is not one of fixed, dynamic"),
        ({"max_batch": 8}, r"--max-batch shapes dynamic batches; pass --batching dynamic"),
        ({"batching": "dynamic", "max_batch": 0}, r"max_batch = 0 should be a positive integer"),
        ({"batching": "dynamic", "max_delay_ms": -1}, r"max_delay_ms = -1 should be a positive number"),
        ({"input_path": []}, r"input_path is an empty list"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(flat: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat(**{"model_name": "m", "input_path": "a.mp4", **flat})


def test_several_files_without_a_rate_are_refused_in_one_line(clip: Path, tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--output-dir", str(tmp_path),
        "--input_path", str(clip), "--input_path", str(clip),
    )  # fmt: skip
    assert result.code == 2
    assert "pass --source-fps N to replay the files as cameras" in one_line_error(result.err)
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--output-dir", str(tmp_path),
        "--input_path", str(clip), "--batching", "dynamic",
    )  # fmt: skip
    assert result.code == 2 and "--batching dynamic batches frames as they arrive" in one_line_error(
        result.err
    )
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


# --- a real run: 4 replayed cameras, dynamic batching ----------------------------------------------------


@pytest.mark.parametrize("pipeline", ["sync", "async"])
def test_four_cameras_with_dynamic_batching(clip: Path, tmp_path: Path, pipeline: str) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), source_fps=10, cameras=4,
            batching="dynamic", max_batch=4, batch_size=4, pipeline=pipeline, warmup_steps=2,
            output_dir=str(tmp_path), progress="none",
        )
    )  # fmt: skip
    rows, summary = result.rows, result.summary
    assert summary["status"] == "complete"
    assert summary["batching"]["mode"] == "dynamic" and summary["batching"]["sources"] == 4
    assert summary["batching"]["max_delay_ms"] == pytest.approx(100.0)  # one interval at 10 FPS
    assert rows["frames"].between(1, 4).all() and rows["sources"].between(1, 4).all()
    assert (rows["sources"] <= rows["frames"]).all()
    sources = summary["sources"]
    assert sources["count"] == 4 and len(sources["per_source"]) == 4
    for entry in sources["per_source"]:
        assert entry["frames"] > 0, f"source {entry['source']} starved: {sources}"  # none starved
        assert 0 < entry["latency_p50_ms"] <= entry["latency_p99_ms"]
        assert entry["on_time_fps"] is not None and entry["dropped"] >= 0
    overall = sources["overall"]
    assert overall["frames"] == sum(e["frames"] for e in sources["per_source"])
    assert overall["frames"] == int(rows[rows["warmup"] == 0]["frames"].sum())  # steady steps' frames
    saved = json.loads((result.run_dir / "summary.json").read_text())
    assert saved["sources"]["overall"]["frames"] == overall["frames"]


def test_one_source_has_one_in_the_sources_column_and_no_sources_block(clip: Path, tmp_path: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), batch_size=8, max_steps=2,
            output_dir=str(tmp_path), progress="none",
        )
    )  # fmt: skip
    assert (result.rows["sources"] == 1).all()
    assert "sources" not in result.summary and result.summary["batching"]["mode"] == "fixed"


def test_latency_samples_stay_bounded_and_keep_the_percentiles() -> None:
    from framescope.records._sources import LatencySample

    exact = LatencySample(keep=1000)
    for value in range(1000):
        exact.add(float(value))
    assert list(exact.values) == [float(v) for v in range(1000)]  # up to the bound, every value: exact
    sample = LatencySample(keep=5000)
    values = np.random.default_rng(3).exponential(20.0, 200_000)
    for value in values:
        sample.add(float(value))
    assert len(sample.values) == 5000 and sample.seen == 200_000
    p99 = float(np.percentile(sample.values, 99))
    assert p99 == pytest.approx(float(np.percentile(values, 99)), rel=0.1)  # sampled uniformly, not the tail
    assert float(np.percentile(sample.values, 50)) == pytest.approx(float(np.median(values)), rel=0.05)
    assert sample.values.itemsize == 8  # packed doubles: a day of frames per source stays under a megabyte


def test_the_per_source_timeline_stays_bounded_and_merges_exactly() -> None:
    from framescope.records._sources import Timeline

    timeline = Timeline(2, window_s=1.0, windows=4)
    for second in range(4):
        timeline.add(0, 100.0 + second, 10.0 * (second + 1))  # 10, 20, 30, 40 ms
        timeline.add(1, 100.0 + second + 0.5, 1.0)
    first = timeline.as_dict()
    assert first["window_s"] == 1.0 and first["start_s"] == [0.0, 1.0, 2.0, 3.0]
    assert first["per_source"][0]["mean_ms"] == [10.0, 20.0, 30.0, 40.0]
    timeline.add(0, 104.2, 50.0)  # past the fourth window: windows double, pairs merged
    merged = timeline.as_dict()
    assert merged["window_s"] == 2.0 and merged["start_s"] == [0.0, 2.0, 4.0]
    assert merged["per_source"][0]["frames"] == [2, 2, 1]
    assert merged["per_source"][0]["mean_ms"] == [15.0, 35.0, 50.0]  # exact: sums and counts merge
    assert merged["per_source"][0]["max_ms"] == [20.0, 40.0, 50.0]
    assert merged["per_source"][1]["max_ms"] == [1.0, 1.0, None]
