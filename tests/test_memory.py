"""A batch that cannot fit in host memory is refused before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import CLIP_FRAMES, run_cli

from framescope import RunConfig
from framescope._memory import GIB, batch_memory, check_batch_memory
from framescope.errors import ConfigError


def config(**flat: object) -> RunConfig:
    return RunConfig.from_flat(model_name="resnet18", input_path="synthetic:1920x1080", **flat)


def test_the_estimate_counts_every_batch_in_flight() -> None:
    sync = batch_memory(
        config(batch_size=8), frame_size=(1920, 1080), model_input=(224, 224), frame_count=None, live=False
    )
    frame, model_input = 1920 * 1080 * 3, 224 * 224 * 3 * 4
    assert sync.total == 8 * (2 * frame + 2 * model_input)
    asynchronous = batch_memory(
        config(batch_size=8, pipeline="async", prefetch=2),
        frame_size=(1920, 1080),
        model_input=(224, 224),
        frame_count=None,
        live=False,
    )
    assert asynchronous.total == 4 * sync.total  # two queued, one being made, one running
    live = batch_memory(
        config(batch_size=8), frame_size=(1920, 1080), model_input=(224, 224), frame_count=None, live=True
    )
    assert live.total == sync.total + 16 * frame  # the live buffer holds two batches


def test_many_sources_and_dynamic_batches_are_counted() -> None:
    frame, model_input = 1920 * 1080 * 3, 224 * 224 * 3 * 4
    many = config(source_fps=10.0, cameras=8, batching="dynamic", max_batch=16)
    need = batch_memory(many, frame_size=(1920, 1080), model_input=(224, 224), frame_count=None, live=True)
    assert need.frames == 16  # the largest batch, not --batch-size 1
    assert need.live_buffer_frames == 8 * 2  # two frames (two batches of --batch-size 1) per camera
    assert need.total == 16 * (2 * frame + 2 * model_input) + 16 * frame
    with pytest.raises(ConfigError, match=r"^--max-batch 16 needs about .* for 8 sources.*use --max-batch"):
        check_batch_memory(need, many, available=int(need.total * 1.2))
    with pytest.raises(ConfigError, match="the live buffers alone do not fit; use fewer sources"):
        check_batch_memory(need, many, available=int(16 * frame / 0.7 * 0.9))


def test_a_finite_input_caps_the_batch() -> None:
    need = batch_memory(
        config(batch_size=100_000), frame_size=(640, 360), model_input=(224, 224), frame_count=60, live=False
    )
    assert need.frames == 60


def test_too_large_a_batch_names_the_need_and_a_size_that_fits() -> None:
    cfg = config(batch_size=1000)
    need = batch_memory(cfg, frame_size=(1920, 1080), model_input=(224, 224), frame_count=None, live=False)
    with pytest.raises(ConfigError) as error:
        check_batch_memory(need, cfg, available=4 * GIB)
    message = str(error.value)
    assert message.startswith("--batch-size 1000 needs about 12.7 GiB of host memory")
    assert "more than the 4.0 GiB available" in message
    suggested = int(message.split("use --batch-size ")[1].split(maxsplit=1)[0])
    assert 0.7 * 4 * GIB >= suggested * need.bytes_per_frame > 0.6 * 4 * GIB  # the largest that fits
    check_batch_memory(
        batch_memory(
            config(batch_size=suggested),
            frame_size=(1920, 1080),
            model_input=(224, 224),
            frame_count=None,
            live=False,
        ),
        config(batch_size=suggested),
        available=4 * GIB,
    )


def test_an_endless_input_with_a_huge_batch_is_refused_before_allocating(out_dir: Path) -> None:
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", "synthetic:1920x1080",
        "--batch-size", "100000", "--output-dir", str(out_dir),
    )  # fmt: skip
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "--batch-size 100000 needs about" in result.err and "use --batch-size" in result.err
    assert not out_dir.exists() or not any(out_dir.iterdir())  # refused before the run directory exists


def test_a_batch_larger_than_the_input_runs_the_input_once(clip: Path, out_dir: Path) -> None:
    """The warm-up batch is never larger than the input (it used to allocate batch x frame bytes)."""
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", str(clip), "--batch-size", "100000",
        "--warmup-steps", "0", "--output-dir", str(out_dir), "--progress", "none",
    )  # fmt: skip
    assert result.code == 0, result.err
    (csv,) = out_dir.glob("*/M_*.csv")
    lines = csv.read_text().splitlines()
    assert len(lines) == 2 and lines[1].split(",")[0] == "0"
    import pandas as pd

    assert pd.read_csv(csv)["frames"].tolist() == [CLIP_FRAMES]
