"""Shared fixtures: generated clips (never downloaded), clean global state between tests, GPU gating."""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from framescope.sources import write_clip

REQUIRE_GPU = os.environ.get("FRAMESCOPE_REQUIRE_GPU") == "1"
REQUIRE_SYSTEM_DEPS = os.environ.get("FRAMESCOPE_REQUIRE_SYSTEM_DEPS") == "1"
"""Set by .ci/run after scripts/install-system-deps.sh: tests needing FFmpeg's libraries (torchcodec) or a
GStreamer RTSP server fail instead of skipping when those are missing."""


def needs_system_dependency(available: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) a test whose system dependency is missing."""
    if available:
        return
    message = f"{what} is not installed here (scripts/install-system-deps.sh installs it)"
    if REQUIRE_SYSTEM_DEPS:
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests skip without CUDA, unless FRAMESCOPE_REQUIRE_GPU=1 says they must run (and so fail)."""
    if torch.cuda.is_available() or REQUIRE_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine with: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_global_state(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    """No test may leak torch thread counts, CPU affinity, OpenCV threads, profiling switches or threads."""
    import cv2

    monkeypatch.delenv("ENABLE_PROFILING", raising=False)
    cv2_threads = cv2.getNumThreads()
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    live_threads = {t.ident for t in threading.enumerate()}
    yield
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (threads, cv2_threads), "thread counts leaked"
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity, "CPU affinity leaked"
    if request.node.get_closest_marker("keeps_torch_worker_threads"):
        return
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in live_threads
        and t.is_alive()
        and not t.daemon
        and t is not threading.current_thread()
    ]
    assert not leaked, f"test leaked threads: {leaked}"


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(media: Path) -> Path:
    """320x240 H.264, 30 FPS, 36 frames."""
    return write_clip(media / "clip.mp4", width=320, height=240, frames=36, fps=30)


CLIP_FRAMES = 36


@pytest.fixture(scope="session")
def clip_1080p(media: Path) -> Path:
    """1920x1080 H.264, 30 FPS, 48 frames: decoding it full size costs more than a small model."""
    return write_clip(media / "1080p.mp4", width=1920, height=1080, frames=48, fps=30)


VFR_PTS_MS = [0, 40, 80, 200, 220, 240, 600, 610, 1000, 1500, 1540, 2000]


@pytest.fixture(scope="session")
def vfr_clip(media: Path) -> Path:
    """Variable frame rate: frames at irregular presentation times (VFR_PTS_MS)."""
    return write_clip(media / "vfr.mp4", width=160, height=120, pts_ms=VFR_PTS_MS)


@pytest.fixture(scope="session")
def vfr_mkv_clip(media: Path) -> Path:
    """The VFR clip in Matroska, which states no frame count (duration x rate says 61 frames)."""
    return write_clip(media / "vfr.mkv", width=160, height=120, pts_ms=VFR_PTS_MS)


@pytest.fixture(scope="session")
def vfr_ts_clip(media: Path) -> Path:
    """The VFR clip in MPEG-TS, which states no frame count (duration x rate says 4001 frames)."""
    return write_clip(media / "vfr.ts", width=160, height=120, pts_ms=VFR_PTS_MS)


@pytest.fixture(scope="session")
def odd_clip(media: Path) -> Path:
    """An odd frame size (161x97) in Matroska; 4:4:4 chroma because 4:2:0 needs even sizes."""
    return write_clip(media / "odd.mkv", width=161, height=97, frames=10, pix_fmt="yuv444p")


@pytest.fixture(scope="session")
def ts_clip(media: Path) -> Path:
    """MPEG-TS, streamable over plain HTTP without range requests."""
    return write_clip(media / "clip.ts", width=160, height=120, frames=20, fps=30)


DAMAGED_FRAMES = 60


def mp4_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """Top-level MP4 boxes: name -> (offset, size)."""
    boxes: dict[str, tuple[int, int]] = {}
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        name = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:  # 64-bit size after the name
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:  # to the end of the file
            size = len(data) - offset
        boxes[name] = (offset, size)
        offset += size
    return boxes


@pytest.fixture(scope="session")
def damaged_clip(media: Path) -> Path:
    """320x240 H.264, 30 FPS, 60 frames (DAMAGED_FRAMES), with 16 KiB of garbage in the middle of its media
    data; the index (moov) is intact, so the container still announces 60 frames. OpenCV stops at the damage
    as if the file ended there (about 30 frames); PyAV skips the undecodable packets and reads to the end."""
    import numpy as np

    intact = write_clip(media / "intact-60.mp4", width=320, height=240, frames=DAMAGED_FRAMES, fps=30)
    data = bytearray(intact.read_bytes())
    offset, size = mp4_boxes(bytes(data))["mdat"]
    start = offset + 8 + (size - 8) // 2
    data[start : start + 16384] = np.random.default_rng(0).integers(0, 256, 16384, dtype=np.uint8).tobytes()
    path = media / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def corrupt_video(media: Path) -> Path:
    path = media / "corrupt.mp4"
    # seeded: a random 64 KiB can, rarely, look like a stream FFmpeg decodes something from
    path.write_bytes(random.Random(1234).randbytes(64 * 1024))
    return path


@pytest.fixture(scope="session")
def empty_video(media: Path) -> Path:
    path = media / "empty.mp4"
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def image_dir(media: Path) -> Path:
    """Nested folders, mixed sizes, names that sort differently naturally and lexically, one broken file."""
    import cv2
    import numpy as np

    root = media / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in {
        "img1.png": (120, 160),
        "img2.jpg": (120, 160),
        "img10.png": (90, 200),
        "sub/img3.jpg": (120, 160),
    }.items():
        cv2.imwrite(str(root / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (root / "broken.jpg").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("ignored")
    return root


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run ``framescope ARGS`` in this process, capturing what it prints."""
    from framescope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse exits for --help and usage errors
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


RowDict = dict[str, object]
"""A step's CSV row as a dict, as the loop tests read it (``rows[0]["exec_latency_ms"]``)."""


def collecting_loop(
    rows: list[Any],
    *,
    batch_size: int,
    clock: Any = None,
    max_steps: int | None = None,
    warmup_steps: int = 0,
    timer: Any = None,
    profiler: Any = None,
    on_row: Any = None,
) -> Any:
    """Loop settings whose steps become CSV rows (dicts, as the recorder makes them) appended to ``rows``."""
    import time as _time

    from framescope.instrument import ProfilerWindow, StageTimer
    from framescope.pipeline import LoopSettings
    from framescope.records import make_row

    clock = clock or _time.perf_counter

    def on_step(timing: Any) -> None:
        row = make_row(timing, batch_size).as_dict()
        rows.append(row)
        if on_row is not None:
            on_row(row)

    return LoopSettings(
        batch_size=batch_size,
        max_steps=max_steps,
        warmup_steps=warmup_steps,
        timer=timer or StageTimer(clock),
        clock=clock,
        profiler=profiler or ProfilerWindow(enabled=False, trace_path=Path("unused")),
        on_step=on_step,
    )
