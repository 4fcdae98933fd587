from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.conftest import VFR_PTS_MS, run_cli

from framescope.config import ExtractConfig
from framescope.errors import ConfigError
from framescope.sources import write_clip
from framescope.tools.extract import extract_frames, image_name
from framescope.tools.sampling import PtsSampler


def oracle(pts: list[float], fps: float, start: float = 0.0, end: float | None = None) -> list[float]:
    """Brute force: for every target up to the last frame, the nearest frame (ties to the later one);
    a frame chosen for an earlier target is not used again."""
    chosen: list[float] = []
    last = max(pts)
    k = 0
    while True:
        target = start + k / fps
        if target > last + 1e-9 or (end is not None and target > end + 1e-9):
            break
        candidates = [p for p in pts if p >= start - 1e-9]
        best = min(candidates, key=lambda p: (abs(p - target), -p))
        if best not in chosen:
            chosen.append(best)
        k += 1
    return chosen


def sample(pts: list[float], fps: float, start: float = 0.0, end: float | None = None) -> list[float]:
    sampler: PtsSampler[None] = PtsSampler(fps, start, end)
    out = []
    for p in pts:
        if p < start - 1e-9:
            continue
        out += [pick.pts_s for pick in sampler.offer(p, None)]
    return out


@pytest.mark.parametrize(
    ("pts", "fps"),
    [
        ([i / 30 for i in range(300)], 0.5),
        ([i / 30 for i in range(300)], 7.0),
        ([i / 25 for i in range(50)], 60.0),  # more targets than frames: no frame twice
        ([ms / 1000 for ms in VFR_PTS_MS], 5.0),
        ([ms / 1000 for ms in VFR_PTS_MS], 1.0),
        ([0.0, 0.01, 0.5, 0.51, 0.99, 2.7, 2.75, 3.0], 2.0),
    ],
)
def test_sampler_picks_the_nearest_frame_to_each_target(pts: list[float], fps: float) -> None:
    assert sample(pts, fps) == pytest.approx(oracle(pts, fps))


def test_sampler_respects_start_and_end() -> None:
    pts = [i / 10 for i in range(100)]
    assert sample(pts, 1.0, start=2.5, end=6.5) == pytest.approx([2.5, 3.5, 4.5, 5.5, 6.5])


def test_sampler_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="fps = 0 should be > 0"):
        PtsSampler(0)


def test_names_sort_in_time_order_and_carry_the_index() -> None:
    names = [image_name("shot_", i, t, "png") for i, t in enumerate([0.0, 2.0, 10.0, 100.5])]
    assert names == sorted(names)
    assert names[3] == "shot_000003_00100500ms.png"


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("x") / "ten.mp4", width=96, height=64, frames=300, fps=30)


def test_ten_second_clip_at_half_an_fps_gives_five_images(ten_seconds: Path, tmp_path: Path) -> None:
    result = extract_frames(
        ExtractConfig(input=str(ten_seconds), output=str(tmp_path), fps=0.5, prefix="shot_")
    )
    assert result.pts_s == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in result.files]
    assert [p.name for p in result.files][:2] == ["shot_000000_00000000ms.png", "shot_000001_00002000ms.png"]
    image = cv2.imread(str(result.files[2]))
    assert image is not None and image.shape == (64, 96, 3)


def test_extracted_images_are_the_frames_at_those_times(ten_seconds: Path, tmp_path: Path) -> None:
    """Compare each written PNG with the frame an independent PyAV decode finds at that timestamp."""
    import av

    result = extract_frames(ExtractConfig(input=str(ten_seconds), output=str(tmp_path), fps=0.5))
    with av.open(str(ten_seconds)) as container:
        by_time = {round(f.time, 3): f.to_ndarray(format="bgr24") for f in container.decode(video=0)}
    for path, pts in zip(result.files, result.pts_s, strict=True):
        written = cv2.imread(str(path))
        assert np.array_equal(written, by_time[round(pts, 3)]), path.name


def test_variable_frame_rate(vfr_clip: Path, tmp_path: Path) -> None:
    result = extract_frames(ExtractConfig(input=str(vfr_clip), output=str(tmp_path), fps=5.0))
    assert result.pts_s == pytest.approx(oracle([ms / 1000 for ms in VFR_PTS_MS], 5.0))


def test_start_end_and_jpeg_quality(ten_seconds: Path, tmp_path: Path) -> None:
    high = extract_frames(
        ExtractConfig(
            input=str(ten_seconds), output=str(tmp_path / "hq"), fps=1, start_s=3.0, end_s=5.5, format="jpg"
        )
    )
    assert high.pts_s == pytest.approx([3.0, 4.0, 5.0])
    assert all(p.suffix == ".jpg" for p in high.files)
    low = extract_frames(
        ExtractConfig(
            input=str(ten_seconds),
            output=str(tmp_path / "lq"),
            fps=1,
            start_s=3.0,
            end_s=5.5,
            format="jpg",
            quality=10,
        )
    )
    assert sum(p.stat().st_size for p in low.files) < sum(p.stat().st_size for p in high.files)


def test_reads_a_stream_url(ts_clip: Path, tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(ts_clip.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{ts_clip.name}"
        result = extract_frames(ExtractConfig(input=url, output=str(tmp_path), fps=10))
    finally:
        server.shutdown()
        server.server_close()
    assert len(result.files) == 7  # a 20-frame 30 FPS clip: 0, 0.1, ..., 0.6 s


def test_cli_prints_a_summary(ten_seconds: Path, tmp_path: Path) -> None:
    result = run_cli(
        "extract-frames",
        "-i",
        str(ten_seconds),
        "-o",
        str(tmp_path),
        "--fps",
        "0.5",
        "--prefix",
        "shot_",
        "--format",
        "png",
    )
    assert result.code == 0, result.err
    assert "wrote 5 frames (0.000 s to 8.000 s of video) to" in result.out
    assert len(list(tmp_path.glob("shot_*.png"))) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "{missing}", "-o", "{out}"], r"does not exist"),
        (["-i", "{clip}", "-o", "{out}", "--fps", "0"], r"--fps 0.0 should be > 0"),
        (["-i", "{clip}", "-o", "{out}", "--fps", "-1"], r"--fps -1.0 should be > 0"),
        (["-i", "{clip}", "-o", "{a_file}"], r"-o/--output .* exists and is not a directory"),
        (["-i", "{clip}", "-o", "{a_file}/sub"], r"cannot create -o/--output"),
        (["-i", "{clip}", "-o", "{out}", "--format", "gif"], r"argument --format: invalid choice: 'gif'"),
        (
            ["-i", "{clip}", "-o", "{out}", "--quality", "0"],
            r"--quality 0 should be an integer from 1 to 100",
        ),
        (
            ["-i", "{clip}", "-o", "{out}", "--start", "5", "--end", "2"],
            r"--end 2.0 should be after --start 5.0",
        ),
        (["-i", "{corrupt}", "-o", "{out}"], r"is not a readable video"),
        (["-i", "0", "-o", "{out}"], r"is a camera; extract-frames reads a video file or a stream URL"),
        (["-o", "{out}"], r"the following arguments are required: -i/--input"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, clip: Path, corrupt_video: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    values = {
        "missing": str(tmp_path / "missing.mp4"),
        "clip": str(clip),
        "corrupt": str(corrupt_video),
        "out": str(tmp_path / "out"),
        "a_file": str(a_file),
    }
    result = run_cli("extract-frames", *(a.format(**values) for a in args))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.err


def test_config_validation_directly() -> None:
    with pytest.raises(ConfigError, match="--prefix 'a/b' should be a file name prefix"):
        ExtractConfig(input="v.mp4", output="o", prefix="a/b")
