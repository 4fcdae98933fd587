"""Live inputs: the drop-oldest buffer, scheduled arrival, reconnects, latency; fake clock and fake sources
for the logic, a real GStreamer RTSP server on loopback for the real thing."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import RowDict as Row
from tests.conftest import collecting_loop, needs_system_dependency

import framescope
from framescope import RunConfig
from framescope.config import SourceConfig
from framescope.errors import ConfigError, SourceError
from framescope.instrument import FakeClock
from framescope.models import StepResult
from framescope.pipeline import PlannedStage, StepPlan, read_frames, run_async, run_sync
from framescope.sources import Frame, FrameBuffer, LiveSource, Source, SourceInfo, backoff_delays, make_source


def frame(index: int, pts: float | None = None) -> Frame:
    return Frame(np.zeros((2, 2, 3), dtype=np.uint8), index, pts, 0.0)


def test_buffer_drops_the_oldest_and_counts() -> None:
    buffer = FrameBuffer(3)
    for i in range(5):
        buffer.put(frame(i))
    assert buffer.dropped == 2
    assert [buffer.get(0).index for _ in range(3)] == [2, 3, 4]  # type: ignore[union-attr]
    assert buffer.get(timeout_s=0.01) is None  # empty, not closed: a time-out
    buffer.put(frame(5))
    buffer.close()
    assert buffer.get().index == 5 and buffer.get() is None  # type: ignore[union-attr]


def test_backoff_doubles_up_to_a_limit() -> None:
    delay = backoff_delays(0.5, 4.0)
    assert [delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


class ScriptedSource(Source):
    """Yields ``frames`` frames (arriving ``interval_s`` apart on the fake clock, with stream timestamps),
    then ends, or raises SourceError when ``then_fail``."""

    def __init__(self, clock: FakeClock, frames: int, *, interval_s: float = 0.0, then_fail: bool = False,
                 pts_step: float = 1 / 30, fail_open: bool = False) -> None:  # fmt: skip
        super().__init__(clock)
        self.fake_clock = clock
        self.frames, self.interval_s, self.then_fail = frames, interval_s, then_fail
        self.pts_step, self.fail_open = pts_step, fail_open
        self.info = SourceInfo(kind="stream", uri="rtsp://fake/cam", decoder="fake", live=True, fps=30.0)
        self.closed = False

    def open(self) -> None:
        if self.fail_open:
            raise SourceError("connection refused")

    def read(self) -> Frame | None:
        if self.frames_read >= self.frames:
            if self.then_fail:
                raise SourceError("no data for 1 s")
            return None
        self.fake_clock.advance(self.interval_s)
        return self._frame(np.zeros((2, 2, 3), dtype=np.uint8), self.frames_read * self.pts_step)

    def close(self) -> None:
        self.closed = True


def drain(source: LiveSource) -> list[Frame]:
    """Let the reader finish first (deterministic drops), then take everything."""
    source._start()
    deadline = time.monotonic() + 10
    while not source.buffer.closed and time.monotonic() < deadline:
        time.sleep(0.005)
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    return frames


def paced(clock: FakeClock, frames: int, fps: float, capacity: int) -> LiveSource:
    return LiveSource(
        lambda: ScriptedSource(clock, frames),
        capacity=capacity,
        clock=clock,
        sleep=clock.sleep,
        pace_fps=fps,
        reconnect=False,
    )


def test_replay_publishes_each_frame_when_it_is_due() -> None:
    clock = FakeClock(100.0)
    source = paced(clock, frames=10, fps=25.0, capacity=100)
    source.open()
    frames = drain(source)
    assert [f.index for f in frames] == list(range(10))
    assert [f.due_s for f in frames] == pytest.approx([100.0 + i / 25 for i in range(10)])
    assert all(f.arrival_s >= f.due_s for f in frames)  # type: ignore[operator]
    assert source.dropped == 0 and source.info.live and source.info.fps == 25.0


def test_a_looped_replay_starts_again_and_keeps_its_schedule() -> None:
    clock = FakeClock(10.0)
    opened: list[ScriptedSource] = []

    def reopen() -> ScriptedSource:
        opened.append(ScriptedSource(clock, 3))
        return opened[-1]

    def sleep(seconds: float) -> None:  # the run ends once ten frames were published
        clock.sleep(seconds)
        if source._published >= 10:
            source._stop.set()

    source = LiveSource(
        reopen, capacity=100, clock=clock, sleep=sleep, pace_fps=10.0, reconnect=False, loop=True
    )
    source.open()
    assert source.info.frame_count is None and source.info.extra["looped"] is True
    frames = drain(source)
    assert [f.index for f in frames] == list(range(len(frames))) and len(frames) >= 10  # frame after frame
    assert [f.due_s for f in frames] == pytest.approx([10.0 + i / 10 for i in range(len(frames))])
    assert source.loops >= 3 and all(s.closed for s in opened[:-1])


def test_a_looped_replay_of_nothing_ends() -> None:
    clock = FakeClock()
    source = LiveSource(
        lambda: ScriptedSource(clock, 0), capacity=4, clock=clock, sleep=clock.sleep, pace_fps=10.0,
        reconnect=False, loop=True,
    )  # fmt: skip
    source.open()
    assert drain(source) == [] and source.loops == 0


def test_loop_needs_a_replay() -> None:
    with pytest.raises(ConfigError, match=r"--loop .* needs --source-fps"):
        SourceConfig(input_path="clip.mp4", loop=True)


def test_a_pipeline_that_falls_behind_gets_the_newest_frames() -> None:
    clock = FakeClock()
    source = paced(clock, frames=50, fps=30.0, capacity=4)
    source.open()
    frames = drain(source)
    assert [f.index for f in frames] == [46, 47, 48, 49]
    assert source.dropped == 46


def test_a_stalled_stream_is_reconnected_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    slept: list[float] = []
    attempts = iter(
        [
            ScriptedSource(clock, 3, interval_s=0.03, then_fail=True),  # opened by open(), then stalls
            ScriptedSource(clock, 0, fail_open=True),  # first reconnect: refused
            ScriptedSource(clock, 2, interval_s=0.03),  # second reconnect: back, then ends
        ]
    )

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    source = LiveSource(
        lambda: next(attempts),
        capacity=100,
        clock=clock,
        sleep=sleep,
        reconnect=True,
        reconnect_on_end=False,
        backoff=backoff_delays(0.5, 8.0),
    )
    source.open()
    with caplog.at_level(logging.WARNING):
        frames = drain(source)
    assert len(frames) == 5 and [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert slept == [0.5, 1.0]
    assert source.reconnects == 1
    assert source.stats.seconds_without_input == pytest.approx(1.5)
    messages = [r.getMessage() for r in caplog.records]
    assert any("reconnecting in 0.5 s (attempt 1)" in m for m in messages)
    assert any("reconnected after 1.5 s" in m for m in messages)


def test_a_stream_that_never_comes_back_is_given_up() -> None:
    clock = FakeClock()
    first = [True]

    def factory() -> Source:
        if first[0]:
            first[0] = False
            return ScriptedSource(clock, 2, then_fail=True)
        return ScriptedSource(clock, 0, fail_open=True)

    source = LiveSource(factory, capacity=10, clock=clock, sleep=clock.advance, reconnect_for_s=10.0)
    source.open()
    with pytest.raises(SourceError, match=r"rtsp://fake/cam is gone: no frames for \d+ s after 0 reconnect"):
        drain(source)


def test_stream_frames_are_due_by_their_timestamps() -> None:
    """Frames 0-2 (shown at 9.9, 9.933, 9.967 s) sat in a network buffer and all arrive at 10.0; from frame 3
    on, frames arrive on time. Once an on-time frame sets the stream clock, due times follow the timestamps
    exactly, so a frame that then arrives late counts as late."""
    clock = FakeClock(10.0)
    arrivals = iter([10.0, 10.0, 10.0, 10.0, 10.0333, 10.2])  # frame 5 is due at 10.0667 but arrives late

    class Bursty(ScriptedSource):
        def read(self) -> Frame | None:
            if self.frames_read >= 6:
                return None
            clock.now = next(arrivals)
            return self._frame(np.zeros((2, 2, 3), dtype=np.uint8), self.frames_read / 30)

    source = LiveSource(lambda: Bursty(clock, 6), capacity=10, clock=clock, reconnect=False)
    source.open()
    frames = drain(source)
    assert [f.due_s for f in frames[3:]] == pytest.approx([10.0, 10.0333, 10.0667], abs=1e-3)
    assert frames[5].arrival_s - frames[5].due_s == pytest.approx(0.1333, abs=1e-3)  # type: ignore[operator]


def test_source_fps_wraps_inputs_and_refuses_live_ones(clip: Path) -> None:
    replay = make_source(SourceConfig(input_path=str(clip), source_fps=30), batch_size=4)
    assert isinstance(replay, LiveSource) and replay.buffer.capacity == 8
    with pytest.raises(ConfigError, match="already live"):
        make_source(SourceConfig(input_path="rtsp://host/cam", source_fps=30))
    assert isinstance(make_source(SourceConfig(input_path="rtsp://host/cam")), LiveSource)
    assert not isinstance(make_source(SourceConfig(input_path=str(clip))), LiveSource)


def test_a_slow_model_cannot_hide_its_backlog() -> None:
    """Real time: frames due every 10 ms, a model taking 50 ms per frame. Frames drop, and latency counts
    from when each frame was due, so it stays above the model's own time."""
    source = make_source(SourceConfig(input_path="synthetic:32x32:200", source_fps=100, live_buffer=2))
    source.open()

    def model(batch: Any) -> StepResult:
        time.sleep(0.05)
        return StepResult(batch)

    rows: list[Row] = []
    try:
        run_sync(
            source,
            StepPlan([PlannedStage("exec", model)]),
            collecting_loop(rows, batch_size=1, max_steps=12),
        )
    finally:
        source.close()
    later = rows[3:]
    assert sum(r["dropped_frames"] for r in rows) > 10
    assert all(r["latency_ms"] >= 50 for r in later)
    assert np.median([r["latency_ms"] for r in later]) < 200  # bounded: only the newest frames wait


def test_live_run_summary(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), source_fps=60, batch_size=2,
            output_dir=str(out_dir), progress="none", deadline_ms=1000,
        )
    )  # fmt: skip
    live = result.summary["live"]
    rows = result.rows
    assert rows["latency_ms"].notna().all() and (rows["latency_ms"] >= rows["latency_min_ms"]).all()
    assert live["deadline_ms"] == 1000 and live["on_time_frames"] + live["late_frames"] > 0
    assert live["latency_p50_ms"] <= live["latency_p90_ms"] <= live["latency_p99_ms"]
    assert live["frames_dropped_all_steps"] == int(rows["dropped_frames"].sum())
    steady = rows[~rows["warmup"].astype(bool)]
    waited = (steady["latency_ms"] - steady["total_step_latency_ms"]).clip(lower=0)
    assert live["queueing_p50_ms"] == pytest.approx(float(np.median(waited)))
    assert live["processing_p50_ms"] == pytest.approx(float(np.median(steady["total_step_latency_ms"])))
    assert 0 <= live["queueing_share"] <= 1
    assert result.summary["source"]["extra"]["replayed_at_fps"] == 60


# --- a real RTSP server -----------------------------------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).parent.parent / "scripts" / "rtsp_server.py"


def gstreamer_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, check=False).returncode == 0


class RtspServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("ready"), (line, self.process.stderr.read() if self.process.stderr else "")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    needs_system_dependency(
        gstreamer_available(), "GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = RtspServer(port)
    server.start()
    yield server
    server.stop()


def live_config(out_dir: Path, url: str, decoder: str, **flat: Any) -> RunConfig:
    return RunConfig.from_flat(
        model_name="mobilenet_v3_small", input_path=url, decoder=decoder, batch_size=2,
        output_dir=str(out_dir), progress="none", open_timeout=5, read_timeout=2, **flat,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_real_rtsp_stream(rtsp_server: RtspServer, out_dir: Path, decoder: str) -> None:
    result = framescope.run(live_config(out_dir, rtsp_server.url, decoder, max_steps=60))
    live = result.summary["live"]
    assert result.summary["source"]["kind"] == "stream" and len(result.rows) == 60
    assert live["reconnects"] == 0
    assert 0 < live["latency_p50_ms"] < 1000
    # frames queued while the model was being built arrive in a burst; once drained, the 30 FPS stream sets
    # the pace, not the model
    later = result.rows.iloc[30:]
    fps = later["frames"].sum() / (later["total_step_latency_ms"].sum() / 1000)
    assert 20 < fps < 40


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_rtsp_server_stopped_and_started_again_mid_run(
    rtsp_server: RtspServer, out_dir: Path, decoder: str
) -> None:
    def outage() -> None:
        time.sleep(3.0)
        rtsp_server.stop()
        time.sleep(2.0)
        rtsp_server.start()

    thread = threading.Thread(target=outage)
    thread.start()
    started = time.monotonic()
    try:
        result = framescope.run(
            live_config(out_dir, rtsp_server.url, decoder, max_steps=150, reconnect_for=30)
        )
    finally:
        thread.join()
    rows = result.rows
    assert result.status == "complete" and len(rows) == 150
    assert result.summary["live"]["reconnects"] >= 1
    reconnected_at = rows.index[rows["reconnects"] > 0][0]
    assert len(rows) - reconnected_at > 20  # the run went on with the restarted server
    gap = rows["step_start_s"].diff().max()
    assert gap > 1.5  # the outage shows as a long step, not as vanished time
    assert time.monotonic() - started < 60


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_gstreamer_helper_is_found_where_installed() -> None:
    if shutil.which(SYSTEM_PYTHON) is None:
        pytest.skip("no system python3")
    assert isinstance(gstreamer_available(), bool)


def test_live_decoding_is_not_counted_in_a_step(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), source_fps=120, batch_size=4,
            decoder="pyav", output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert result.rows["decode_latency_ms"].isna().all()
    assert (result.rows["read_latency_ms"] > 0).all()


def filled(capacity: int, frames: int, *, fresh: bool) -> LiveSource:
    """A live source whose reader has put ``frames`` frames into a buffer of ``capacity`` and ended."""
    clock = FakeClock()
    source = LiveSource(
        lambda: ScriptedSource(clock, frames),
        capacity=capacity,
        clock=clock,
        sleep=clock.sleep,
        pace_fps=30.0,
        reconnect=False,
        fresh=fresh,
    )
    source.open()
    source._start()
    deadline = time.monotonic() + 10
    while not source.buffer.closed and time.monotonic() < deadline:
        time.sleep(0.005)
    return source


def test_under_overload_a_batch_is_the_newest_frames_unless_buffering_was_asked_for() -> None:
    """Twelve frames came for a buffer of eight (four dropped: the pipeline is behind): a batch of two is
    the newest two; a burst of eight that fits is taken in order; with an explicit --live-buffer
    (smoothing) the buffer is worked through in order."""
    burst = filled(capacity=8, frames=8, fresh=True)
    assert [f.index for f in read_frames(burst, 2)] == [0, 1]  # a burst that fits: not behind, nothing lost
    assert burst.dropped == 0
    fresh = filled(capacity=8, frames=12, fresh=True)  # the buffer overflowed: the pipeline is behind
    assert [f.index for f in read_frames(fresh, 2)] == [10, 11]
    assert fresh.dropped == 10 and fresh.info.extra["newest_first"] is True
    smoothing = filled(capacity=8, frames=12, fresh=False)
    assert [f.index for f in read_frames(smoothing, 2)] == [4, 5]
    assert smoothing.dropped == 4
    fresh.discard(3)  # a stale prefetched batch thrown away unprocessed
    assert fresh.dropped == 13


def async_live_latency(live_buffer: int) -> tuple[float, float, int]:
    """Real time, async: frames due every 10 ms, a model taking 30 ms per batch of 2; (median latency of
    the later steps, median step time, frames dropped)."""
    source = make_source(
        SourceConfig(input_path="synthetic:32x32:300", source_fps=100, live_buffer=live_buffer)
    )
    source.open()

    def model(batch: Any) -> StepResult:
        time.sleep(0.03)
        return StepResult(batch)

    rows: list[Row] = []
    try:
        run_async(
            source, StepPlan([PlannedStage("exec", model)]), collecting_loop(rows, batch_size=2, max_steps=20)
        )
    finally:
        source.close()
    later = rows[5:]
    return (
        float(np.median([r["latency_ms"] for r in later])),
        float(np.median([r["total_step_latency_ms"] for r in later])),
        sum(r["dropped_frames"] for r in rows),
    )


def test_a_fresh_live_run_keeps_latency_near_the_step_time() -> None:
    """The prefetch queue and the buffer could hold several batches of backlog; the newest batch is taken
    instead, so frames are at most about two steps old and the stale ones count as dropped. Asked to buffer
    (--live-buffer 8), the same run works through its backlog in order, and its frames are older."""
    latency, step, dropped = async_live_latency(0)
    assert latency <= 3 * step  # about two steps; a loaded machine stretches the waits a little
    assert dropped > 5
    buffered, _, _ = async_live_latency(8)
    assert buffered > 1.5 * latency
