from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
from tests.conftest import (
    CLIP_FRAMES,
    DAMAGED_FRAMES,
    VFR_PTS_MS,
    mp4_boxes,
    needs_system_dependency,
    run_cli,
)

from framescope.config import SourceConfig
from framescope.diagnose._rules import shortfall_message
from framescope.errors import ConfigError, SourceError
from framescope.instrument import FakeClock
from framescope.sources import (
    Frame,
    InputTally,
    Source,
    input_shortfall,
    make_source,
    parse_source,
    sample_clip_path,
    write_clip,
)

DECODERS = ["opencv", "pyav"]


def read_all(source: Source) -> list[Frame]:
    frames = []
    with source:
        while (frame := source.read()) is not None:
            frames.append(frame)
    return frames


def open_source(path: str | Path, decoder: str = "opencv", **kw: float) -> Source:
    return make_source(SourceConfig(input_path=str(path), decoder=decoder, **kw))  # type: ignore[arg-type]


def pyav_reference(path: Path) -> list[tuple[float, np.ndarray]]:
    """An independent decode with PyAV's high-level API: (pts seconds, RGB image) per frame."""
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


# --- parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("0", "camera", "0"),
        ("/dev/video2", "camera", "2"),
        ("rtsp://cam.local/stream", "stream", "rtsp://cam.local/stream"),
        ("https://example.com/v.m3u8", "stream", "https://example.com/v.m3u8"),
        ("video.mp4", "file", "video.mp4"),
        ("file:///data/v.mkv", "file", "/data/v.mkv"),
        ("sample:", "sample", "sample:"),
    ],
)
def test_input_kinds(text: str, kind: str, target: str) -> None:
    spec = parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)


def test_existing_directory_is_an_image_folder(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path)).kind == "images"


def test_synthetic_spec() -> None:
    spec = parse_source("synthetic:1280x720:300")
    assert (spec.kind, spec.width, spec.height, spec.frames) == ("synthetic", 1280, 720, 300)
    assert parse_source("synthetic:64x48").frames is None


@pytest.mark.parametrize("text", ["synthetic:1280", "synthetic:0x10", "synthetic:axb", "ftp://host/v.mp4"])
def test_bad_specs_explain_the_syntax(text: str) -> None:
    with pytest.raises(ConfigError, match="--input_path"):
        parse_source(text)


# --- files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
def test_file_frames_match_an_independent_decode(clip: Path, decoder: str) -> None:
    reference = pyav_reference(clip)
    frames = read_all(open_source(clip, decoder))
    assert len(frames) == len(reference) == CLIP_FRAMES
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    for frame, (pts, image) in zip(frames, reference, strict=True):
        assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
        assert frame.pts_s == pytest.approx(pts, abs=1e-3)
        # Both decoders see the same pixels up to colour-conversion rounding.
        assert np.abs(frame.image.astype(int) - image.astype(int)).mean() < 3.0


@pytest.mark.parametrize("decoder", DECODERS)
def test_source_info_describes_the_file(clip: Path, decoder: str) -> None:
    source = open_source(clip, decoder)
    with source:
        info = source.info
    assert (info.kind, info.width, info.height, info.codec) == ("file", 320, 240, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.live is False


@pytest.mark.parametrize("decoder", DECODERS)
def test_variable_frame_rate_keeps_presentation_times(vfr_clip: Path, decoder: str) -> None:
    frames = read_all(open_source(vfr_clip, decoder))
    assert [round(f.pts_s * 1000) for f in frames if f.pts_s is not None] == VFR_PTS_MS


@pytest.mark.parametrize("decoder", DECODERS)
def test_odd_frame_size(odd_clip: Path, decoder: str) -> None:
    frames = read_all(open_source(odd_clip, decoder))
    assert len(frames) == 10
    assert frames[0].image.shape == (97, 161, 3)


def test_arrival_time_comes_from_the_injected_clock(clip: Path) -> None:
    clock = FakeClock(100.0)
    source = make_source(SourceConfig(input_path=str(clip)), clock=clock)
    with source:
        first = source.read()
        clock.advance(0.5)
        second = source.read()
    assert first is not None and second is not None
    assert (first.arrival_s, second.arrival_s) == (100.0, 100.5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_missing_file(tmp_path: Path, decoder: str) -> None:
    with pytest.raises(SourceError, match=r"does not exist; check the path"):
        open_source(tmp_path / "nope.mp4", decoder).open()


@pytest.mark.parametrize("decoder", DECODERS)
def test_empty_file(empty_video: Path, decoder: str) -> None:
    with pytest.raises(SourceError, match=r"is empty \(0 bytes\)"):
        open_source(empty_video, decoder).open()


@pytest.mark.parametrize("decoder", DECODERS)
def test_corrupt_file(corrupt_video: Path, decoder: str) -> None:
    with pytest.raises(SourceError, match=r"is not a readable video .*ffprobe"):
        open_source(corrupt_video, decoder).open()


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_file_without_index(clip: Path, tmp_path: Path, decoder: str) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(SourceError, match="is not a readable video"):
        open_source(cut, decoder).open()


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_stream_file_keeps_the_frames_before_the_cut(
    ts_clip: Path, tmp_path: Path, decoder: str
) -> None:
    cut = tmp_path / "cut.ts"
    cut.write_bytes(ts_clip.read_bytes()[: ts_clip.stat().st_size // 2])
    frames = read_all(open_source(cut, decoder))
    assert 0 < len(frames) < 20


# --- inputs that end early ----------------------------------------------------------------------------------


def test_opencv_stops_at_damage_and_says_the_input_ended_short(damaged_clip: Path) -> None:
    """OpenCV reports the damaged packet as the end of the file; the shortfall tells the two apart."""
    source = open_source(damaged_clip, "opencv")
    frames = read_all(source)
    assert len(frames) < 0.9 * DAMAGED_FRAMES  # it really stopped early
    shortfall = input_shortfall(source)
    assert shortfall == {"frames_read": len(frames), "frames_expected": DAMAGED_FRAMES, "frames_skipped": 0}
    warning = shortfall_message(shortfall, str(damaged_clip))
    assert "\n" not in warning
    assert warning.startswith(f"the input ended after {len(frames)} of the {DAMAGED_FRAMES} frames")
    assert "damaged or truncated" in warning and "--decoder pyav" in warning and str(damaged_clip) in warning


def test_pyav_reads_past_the_damage_and_counts_what_it_skipped(damaged_clip: Path) -> None:
    with av.open(str(damaged_clip)) as container:  # the last frame's time, from the intact index
        stream = container.streams.video[0]
        last_pts = max(p.pts for p in container.demux(stream) if p.pts is not None) * stream.time_base
    source = open_source(damaged_clip, "pyav")
    frames = read_all(source)
    assert frames[-1].pts_s == pytest.approx(float(last_pts), abs=1e-3)
    assert len(frames) > len(read_all(open_source(damaged_clip, "opencv")))
    assert source.frames_skipped > 0  # reported as skipped packets, not as an early end
    assert input_shortfall(source) is None


def test_torchcodec_skips_frames_it_cannot_decode(damaged_clip: Path) -> None:
    """torchcodec raises on the damaged packets ("Could not push packet to decode"); they are skipped and
    counted as PyAV's are, instead of ending the run with a traceback."""
    from tests.test_decode import torchcodec_works

    needs_system_dependency(torchcodec_works(), "torchcodec with FFmpeg's shared libraries")
    source = open_source(damaged_clip, "torchcodec")
    frames = read_all(source)
    assert source.reached_end and len(frames) + source.frames_skipped == DAMAGED_FRAMES
    assert len(frames) > len(read_all(open_source(damaged_clip, "opencv")))


def test_the_warning_reads_the_same_for_every_decoder(damaged_clip: Path) -> None:
    texts = [
        shortfall_message({"frames_read": 30, "frames_expected": 60, "frames_skipped": skipped}, "v.mp4")
        for skipped in (0, 4)
    ]
    assert texts[0] == (
        "the input ended after 30 of the 60 frames its container announced: the file may be damaged or "
        "truncated; check it with ffmpeg -v error -i v.mp4 -f null - (prints the damage), or try --decoder "
        "pyav, which skips damaged packets and reads on."
    )
    assert texts[1] == texts[0].replace(
        "announced:", "announced, 4 undecodable packet(s) or file(s) skipped:"
    )


@pytest.mark.parametrize("decoder", DECODERS)
def test_stopping_before_the_end_is_no_shortfall(damaged_clip: Path, decoder: str) -> None:
    """As with --max-steps: the run stops reading; the input did not end."""
    source = open_source(damaged_clip, decoder)
    with source:
        for _ in range(5):
            assert source.read() is not None
    assert not source.tally().reached_end
    assert input_shortfall(source) is None


def test_a_replayed_file_reports_the_shortfall_of_what_it_decoded(damaged_clip: Path) -> None:
    source = open_source(damaged_clip, "opencv", source_fps=2000.0)
    frames = read_all(source)
    assert 0 < len(frames) < 0.9 * DAMAGED_FRAMES
    shortfall = input_shortfall(source)
    assert shortfall is not None and shortfall["frames_expected"] == DAMAGED_FRAMES


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(
    "fixture", ["clip", "vfr_clip", "vfr_mkv_clip", "vfr_ts_clip", "odd_clip", "ts_clip"]
)
def test_intact_inputs_are_no_shortfall(request: pytest.FixtureRequest, fixture: str, decoder: str) -> None:
    source = open_source(request.getfixturevalue(fixture), decoder)
    frames = read_all(source)
    tally = source.tally()
    assert tally.reached_end and tally.frames_expected is not None
    if fixture.startswith("vfr_"):
        # MKV and MPEG-TS state no frame count, and duration x frame rate overstates a VFR clip (61 and
        # 4001 "frames" for these 12): the frames covering the whole duration is what keeps them quiet.
        assert len(frames) == len(VFR_PTS_MS) <= tally.frames_expected
    assert input_shortfall(source) is None


@pytest.mark.parametrize(
    ("read", "skipped", "expected", "seconds_read", "short"),
    [
        (30, 0, 60, 1.0, True),
        (54, 0, 60, 1.75, True),  # 10 % short in frames, and more in time
        (55, 0, 60, 1.83, False),  # within 10 %
        (7, 0, 10, 0.23, True),
        (8, 0, 10, 0.27, False),  # 2 frames short: under the 3-frame minimum
        (30, 30, 60, 1.0, False),  # the rest were skipped, and reported as such
        (12, 0, 61, 2.03, False),  # VFR with a count from duration x rate: the frames cover the duration
        (30, 0, 60, None, True),  # no timestamps (images): the count decides
    ],
)
def test_shortfall_tolerance(
    read: int, skipped: int, expected: int, seconds_read: float | None, short: bool
) -> None:
    tally = InputTally(
        frames_read=read,
        frames_skipped=skipped,
        reached_end=True,
        frames_expected=expected,
        seconds_expected=expected / 30,
        seconds_read=seconds_read,
    )
    assert (input_shortfall(tally) is not None) is short


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(clip: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(clip.read_bytes())
    locked.chmod(0)
    with pytest.raises(SourceError, match="permission denied"):
        open_source(locked).open()


# --- image folders, synthetic, sample ---------------------------------------------------------------------


def test_image_folder_natural_order_nested_mixed_sizes_and_skips(image_dir: Path) -> None:
    source = make_source(SourceConfig(input_path=str(image_dir)))
    frames = read_all(source)
    names = [p.relative_to(image_dir).as_posix() for p in source.files]  # type: ignore[attr-defined]
    assert names == ["broken.jpg", "img1.png", "img2.jpg", "img10.png", "sub/img3.jpg"]
    assert len(frames) == 4
    assert [f.image.shape for f in frames] == [(120, 160, 3), (120, 160, 3), (90, 200, 3), (120, 160, 3)]
    assert source.frames_skipped == 1
    assert source.skipped_files == [str(image_dir / "broken.jpg")]  # type: ignore[attr-defined]
    assert source.tally().reached_end and input_shortfall(source) is None  # skipped files are no shortfall


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(SourceError, match="has no images"):
        make_source(SourceConfig(input_path=str(tmp_path))).open()


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def run_args(input_path: str | Path, out_dir: Path, *more: str) -> list[str]:
    return [
        "run", "--model-name", "mobilenet_v3_small", "--input_path", str(input_path),
        "--output-dir", str(out_dir), *more,
    ]  # fmt: skip


def test_folder_whose_images_are_all_unreadable(tmp_path: Path, out_dir: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("c.jpg", "a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image at all")
    result = run_cli(*run_args(folder, out_dir))
    assert result.code == 2
    assert one_line(result.err) == (
        f"framescope: error: directory {str(folder)!r} has 3 image file(s) but none could be decoded (a.jpg, "
        "b.png, c.jpg); check they are complete images (re-copy or re-export them), or pass a video file."
    )


def test_folder_of_videos_names_them(tmp_path: Path, clip: Path, out_dir: Path) -> None:
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    (folder / "sub" / "b.mkv").write_bytes(clip.read_bytes())
    (folder / "notes.txt").write_text("x")
    result = run_cli(*run_args(folder, out_dir))
    assert result.code == 2
    assert one_line(result.err) == (
        f"framescope: error: directory {str(folder)!r} holds no images but 2 video file(s) (a.mp4, "
        "sub/b.mkv); pass one of them as --input_path."
    )


def test_opening_a_folder_decodes_up_to_the_first_readable_image_and_keeps_it(
    tmp_path: Path, image_dir: Path
) -> None:
    import shutil

    folder = tmp_path / "frames"
    shutil.copytree(image_dir, folder)
    (folder / "img5.jpg").write_bytes(b"broken, after img2")
    source = make_source(SourceConfig(input_path=str(folder)))
    source.open()
    assert source.skipped_files == [str(folder / "broken.jpg")]  # type: ignore[attr-defined]
    (folder / "img1.png").unlink()  # already decoded by open(): the first read hands it out
    source.set_output_size((80, 60))
    first = source.read()
    assert first is not None and first.image.shape == (60, 80, 3)
    rest = []
    while (frame := source.read()) is not None:
        rest.append(frame)
    assert len(rest) == 3 and source.frames_skipped == 2


def test_synthetic_source_counts_and_timestamps() -> None:
    frames = read_all(make_source(SourceConfig(input_path="synthetic:64x48:10")))
    assert len(frames) == 10
    assert frames[0].image.shape == (48, 64, 3)
    assert frames[3].pts_s == pytest.approx(0.1)
    assert not np.array_equal(frames[0].image, frames[1].image)


def test_sample_clip_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMESCOPE_CACHE", str(tmp_path))
    path = sample_clip_path()
    assert path.parent == tmp_path and path.stat().st_size > 0
    stamp = path.stat().st_mtime_ns
    assert sample_clip_path().stat().st_mtime_ns == stamp
    frames = read_all(make_source(SourceConfig(input_path="sample:")))
    assert len(frames) == 300 and frames[0].image.shape == (360, 640, 3)


def test_write_clip_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_clip(tmp_path / "a.mp4", frames=3)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


# --- network streams and cameras --------------------------------------------------------------------------


@pytest.fixture
def plain_http(media: Path) -> Iterator[str]:
    """The URL of ``media`` served by http.server, which answers no Range requests."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(media)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_server(plain_http: str, ts_clip: Path, media: Path) -> str:
    return f"{plain_http}/{ts_clip.relative_to(media).as_posix()}"


@pytest.mark.parametrize("decoder", DECODERS)
def test_http_stream_is_read_to_its_end(http_server: str, decoder: str) -> None:
    source = open_source(http_server, decoder)
    frames = read_all(source)
    assert source.info.kind == "stream" and source.info.live
    assert len(frames) == 20


@pytest.mark.parametrize("decoder", DECODERS)
def test_mp4_over_http_without_range_support_says_why_and_how_to_fix_it(
    plain_http: str, clip: Path, media: Path, out_dir: Path, decoder: str
) -> None:
    boxes = mp4_boxes(clip.read_bytes())
    assert boxes["moov"][0] > boxes["mdat"][0]  # PyAV writes the index last: FFmpeg must seek back for it
    url = f"{plain_http}/{clip.relative_to(media).as_posix()}"
    result = run_cli(
        *run_args(url, out_dir, "--decoder", decoder, "--open-timeout", "5", "--read-timeout", "5")
    )
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith(f"framescope: error: stream {url} opened but sent no frame (FFmpeg: "), line
    assert "(FFmpeg: )" not in line
    assert line.endswith(
        "an MP4 read over HTTP needs a server that answers Range requests unless its index (moov atom) comes "
        "first: serve it with range support, remux it with ffmpeg -i IN.mp4 -c copy -movflags +faststart "
        "OUT.mp4, or serve MPEG-TS instead."
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word: a stream that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_stream_that_never_answers_times_out(silent_server: int, decoder: str, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server}/live"
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"could not be opened|sent no (frame|data)"):
        open_source(url, decoder, open_timeout_s=1.0, read_timeout_s=1.0).open()
    assert time.monotonic() - started < 8.0


@pytest.mark.parametrize("decoder", DECODERS)
def test_refused_stream(decoder: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=r"stream rtsp://127.0.0.1:\d+/x could not be opened"):
        open_source(f"rtsp://127.0.0.1:{port}/x", decoder, open_timeout_s=2.0).open()


@pytest.mark.parametrize("decoder", DECODERS)
def test_missing_camera(decoder: str) -> None:
    with pytest.raises(SourceError, match=r"camera 63 could not be opened"):
        open_source("63", decoder).open()


@pytest.mark.parametrize(
    ("text", "endless"),
    [
        ("rtsp://cam/1", True),
        ("udp://239.0.0.1:1234", True),
        ("0", True),
        ("http://host/v.ts", False),
        ("v.mp4", False),
    ],
)
def test_which_inputs_never_end_on_their_own(text: str, endless: bool) -> None:
    assert parse_source(text).endless is endless
