"""Decoding as its own stage, resizing while decoding, and the torchcodec decoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest
import torch
from tests.conftest import CLIP_FRAMES, VFR_PTS_MS, needs_system_dependency, run_cli

import framescope
from framescope import RunConfig
from framescope.config import SourceConfig
from framescope.errors import ConfigError, SourceError
from framescope.preprocess import InputSpec, resized_size
from framescope.sources import Source, make_source
from framescope.sources._torchcodec import torchcodec_problem


def torchcodec_works() -> bool:
    """Whether torchcodec decodes here: importing it does not load libtorchcodec or FFmpeg's libraries."""
    return torchcodec_problem() is None


@pytest.fixture
def torchcodec() -> None:
    needs_system_dependency(torchcodec_works(), "torchcodec with FFmpeg's shared libraries")


def frames_of(source: Source) -> list[Any]:
    out = []
    with source:
        while (frame := source.read()) is not None:
            out.append(frame)
    return out


CLASSIFY = InputSpec("classification", (224, 224), resize=256)
RCNN = InputSpec("detection", None, resize=800, max_size=1333, mean=None, std=None)


@pytest.mark.parametrize(
    ("level", "spec", "frame", "expected"),
    [
        ("simple", CLASSIFY, (1920, 1080), (224, 224)),
        ("medium", CLASSIFY, (1920, 1080), (455, 256)),
        ("medium", CLASSIFY, (1080, 1920), (256, 455)),
        ("complex", CLASSIFY, (640, 360), (455, 256)),
        ("medium", RCNN, (1920, 1080), (1333, 749)),
        ("medium", RCNN, (640, 480), (1066, 800)),
    ],
)
def test_decode_size_auto_is_the_first_resize(
    level: str, spec: InputSpec, frame: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resized_size(level, spec, *frame) == expected


def test_auto_size_equals_what_preprocessing_produces() -> None:
    """An independent check of resized_size: run the real transform's first step."""
    from framescope.preprocess import build_transform

    for level in ("simple", "medium"):
        first = build_transform(level, CLASSIFY).transforms[0]
        out = first(torch.zeros(1, 3, 1080, 1920, dtype=torch.uint8))
        assert resized_size(level, CLASSIFY, 1920, 1080) == (out.shape[-1], out.shape[-2])


def test_pyav_resizes_while_decoding(clip: Path) -> None:
    source = make_source(SourceConfig(input_path=str(clip), decoder="pyav"))
    source.set_output_size((160, 120))
    frames = frames_of(source)
    assert len(frames) == CLIP_FRAMES and all(f.image.shape == (120, 160, 3) for f in frames)


@pytest.mark.parametrize("size", [(160, 120), (157, 87)])
def test_pyav_resized_frames_are_rgb_and_match_a_resize_of_the_full_frame(
    clip: Path, size: tuple[int, int]
) -> None:
    """Resizing while decoding writes planar RGB (faster than packed): the frames must still be RGB, in
    order, and the picture a torchvision resize of the full frame makes (colour test patterns: a swapped
    channel is off by tens of levels)."""
    from torchvision.transforms.v2 import functional as F

    source = make_source(SourceConfig(input_path=str(clip), decoder="pyav"))
    source.set_output_size(size)
    frames = frames_of(source)
    with av.open(str(clip)) as container:
        full = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    width, height = size
    for frame, expected in zip(frames, full, strict=True):
        assert frame.image.shape == (height, width, 3) and frame.image.flags["C_CONTIGUOUS"]
        reference = F.resize(torch.from_numpy(expected).permute(2, 0, 1), [height, width], antialias=True)
        difference = torch.from_numpy(frame.image).permute(2, 0, 1).float() - reference.float()
        assert difference.abs().mean() < 4.0
        assert difference.mean(dim=(1, 2)).abs().max() < 2.0


def test_opencv_says_it_cannot_resize_while_decoding(clip: Path) -> None:
    source = make_source(SourceConfig(input_path=str(clip), decoder="opencv"))
    source.set_output_size((160, 120))
    assert frames_of(source)[0].image.shape == (240, 320, 3)
    assert "--decode-size has no effect with --decoder opencv" in source.warnings[0]


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_decode_is_its_own_column(clip: Path, out_dir: Path, decoder: str) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), decoder=decoder, batch_size=4,
            output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    rows = result.rows
    assert (rows["decode_latency_ms"] > 0).all() and (rows["read_latency_ms"] > 0).all()
    stages = rows[
        ["read_latency_ms", "decode_latency_ms", "prep_latency_ms", "exec_latency_ms", "post_latency_ms"]
    ]
    assert (rows["total_step_latency_ms"] >= stages.sum(axis=1)).all()  # decode is not counted twice


def test_decode_size_auto_in_a_run(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), decoder="pyav", decode_size="auto",
            prep_level="medium", batch_size=4, max_steps=2, output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert (
        result.summary["decode_size"] == [0, 0] or result.summary["decode_size"] is None
    )  # 320x240 < 256 short
    explicit = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), decoder="pyav", decode_size="160x120",
            batch_size=4, max_steps=2, output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert explicit.summary["decode_size"] == [160, 120]


@pytest.mark.parametrize("text", ["160", "axb", "1x1", "160x"])
def test_bad_decode_sizes(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--decode-size .* should be WIDTHxHEIGHT"):
        SourceConfig(input_path="v.mp4", decode_size=text)


def test_decode_on_gpu_needs_a_gpu_decoder() -> None:
    with pytest.raises(ConfigError, match="--decode-on-gpu needs --decoder torchcodec"):
        SourceConfig(input_path="v.mp4", decode_on_gpu=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_decode_on_gpu_without_cuda(clip: Path, out_dir: Path) -> None:
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", str(clip), "--decoder", "pyav",
        "--decode-on-gpu", "--output-dir", str(out_dir),
    )  # fmt: skip
    assert result.code == 2
    assert result.err.strip().startswith("framescope: error: --decode-on-gpu needs a CUDA GPU")


# --- torchcodec ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("torchcodec")
def test_torchcodec_frames_match_pyav(clip: Path) -> None:
    frames = frames_of(make_source(SourceConfig(input_path=str(clip), decoder="torchcodec")))
    with av.open(str(clip)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(reference) == CLIP_FRAMES
    for frame, expected in zip(frames, reference, strict=True):
        assert isinstance(frame.image, torch.Tensor) and frame.image.shape == (3, 240, 320)
        difference = np.abs(frame.image.permute(1, 2, 0).numpy().astype(int) - expected.astype(int))
        assert difference.mean() < 3.0


@pytest.mark.usefixtures("torchcodec")
def test_torchcodec_keeps_presentation_times_and_resizes(vfr_clip: Path) -> None:
    source = make_source(SourceConfig(input_path=str(vfr_clip), decoder="torchcodec"))
    source.set_output_size((80, 60))
    frames = frames_of(source)
    assert [round(f.pts_s * 1000) for f in frames] == VFR_PTS_MS
    assert frames[0].image.shape == (3, 60, 80)


@pytest.mark.usefixtures("torchcodec")
def test_torchcodec_run_and_bad_inputs(clip: Path, corrupt_video: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small", input_path=str(clip), decoder="torchcodec", batch_size=4,
            output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert result.rows["frames"].sum() == CLIP_FRAMES and (result.rows["decode_latency_ms"] > 0).all()
    with pytest.raises(SourceError, match="is not a readable video"):
        make_source(SourceConfig(input_path=str(corrupt_video), decoder="torchcodec")).open()
    with pytest.raises(SourceError, match="--decoder torchcodec reads video files"):
        make_source(SourceConfig(input_path="rtsp://host/cam", decoder="torchcodec")).open()


def test_the_torchcodec_probe_agrees_with_decoding(clip: Path) -> None:
    """The availability check tries what decoding needs: it says "works" exactly where a clip decodes."""
    try:
        import torchcodec.decoders

        torchcodec.decoders.VideoDecoder(str(clip)).get_frame_at(0)
        decodes = True
    except Exception:
        decodes = False
    problem = torchcodec_problem()
    assert (problem is None) is decodes, problem
    if problem is not None:
        assert "\n" not in problem and problem.endswith("or use --decoder pyav.")


def test_torchcodec_without_ffmpeg_libraries_blames_them_not_the_file(clip: Path, out_dir: Path) -> None:
    if importlib.util.find_spec("torchcodec") is None:
        pytest.skip("torchcodec is not installed (test_torchcodec_missing_is_a_clear_error covers that)")
    if torchcodec_works():
        pytest.skip("torchcodec loads FFmpeg's libraries here (test_torchcodec_run_and_bad_inputs covers it)")
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", str(clip), "--decoder", "torchcodec",
        "--output-dir", str(out_dir),
    )  # fmt: skip
    assert result.code == 2
    line = result.err.strip()
    assert "\n" not in line
    assert line.startswith("framescope: error: torchcodec cannot load FFmpeg's shared libraries ("), line
    assert line.endswith(
        "install FFmpeg's libraries (Debian: apt install libavcodec59 libavformat59 libavutil57 libswscale6 "
        "libavdevice59 libavfilter8), or use --decoder pyav."
    )
    assert "not a readable video" not in line


def test_torchcodec_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torchcodec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torchcodec"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchcodec)
    with pytest.raises(
        SourceError, match=r"--decoder torchcodec needs the torchcodec package; install it with pip"
    ):
        make_source(SourceConfig(input_path=str(clip), decoder="torchcodec")).open()


@pytest.mark.gpu
@pytest.mark.usefixtures("torchcodec")
def test_torchcodec_decodes_on_the_gpu(clip: Path, out_dir: Path) -> None:
    result = framescope.run(
        RunConfig.from_flat(
            model_name="resnet18", input_path=str(clip), decoder="torchcodec", decode_on_gpu=True,
            infer_on_gpu=True, prep_on_gpu=True, batch_size=4, output_dir=str(out_dir), progress="none",
        )
    )  # fmt: skip
    assert result.rows["h2d_latency_ms"].isna().all()  # frames never visit host memory
    assert not any("fell back" in w for w in result.summary["warnings"])


@pytest.mark.parametrize(
    ("codec_format", "frame_format", "on_gpu"),
    [
        ("cuda", "nv12", True),  # NVDEC, 8-bit 4:2:0, downloaded to the host
        ("cuda", "p010le", True),  # NVDEC, 10-bit
        ("cuda", "yuv444p", True),  # NVDEC 4:4:4 (HEVC on recent GPUs) downloads planar
        ("yuv420p", "yuv420p", False),  # FFmpeg fell back to its software decoder
        ("yuv444p", "yuv444p", False),  # H.264 4:4:4, which NVDEC cannot decode
    ],
)
def test_nvdec_is_told_from_a_fallback_by_the_pixel_formats(
    codec_format: str, frame_format: str, on_gpu: bool
) -> None:
    """PyAV's codec_context.is_hwaccel stays true after FFmpeg falls back to software decoding at run time;
    the formats do not."""
    from framescope.sources._pyav import decoded_on_gpu

    assert decoded_on_gpu(codec_format, frame_format) is on_gpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where no CUDA device can be created")
def test_a_cuda_device_that_cannot_be_created_is_named_not_the_video(clip: Path) -> None:
    from framescope.sources import PyAVSource, SourceSpec

    source = PyAVSource(SourceSpec("file", str(clip)), on_gpu=True)
    with pytest.raises(SourceError) as error:
        source.open()
    message = str(error.value)
    assert message.startswith("--decode-on-gpu: FFmpeg could not create a CUDA device for NVDEC (")
    assert "not a readable video" not in message and "drop --decode-on-gpu" in message


class FakeFrame:
    def __init__(self, height: int, width: int, pts: float) -> None:
        self.data = torch.zeros(3, height, width, dtype=torch.uint8)
        self.pts_seconds = pts


class FakeVideoDecoder:
    """torchcodec's VideoDecoder as far as TorchCodecSource uses it, refusing transforms off the CPU as the
    real one does ("Transforms are only supported for CPU devices")."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, path: str, *, num_ffmpeg_threads: int, device: torch.device, transforms: Any) -> None:
        if transforms and device.type != "cpu":
            raise RuntimeError("Transforms are only supported for CPU devices")
        FakeVideoDecoder.made.append({"device": device, "transforms": transforms})
        self.metadata = type(
            "Metadata",
            (),
            {"width": 640, "height": 360, "average_fps": 30.0, "codec": "h264", "duration_seconds": 0.1},
        )
        self.cpu_fallback = ""

    def __len__(self) -> int:
        return 3

    def get_frame_at(self, index: int) -> FakeFrame:
        return FakeFrame(360, 640, index / 30)


def test_gpu_decoding_resizes_after_decoding(monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    """torchcodec cannot resize inside a CUDA decoder; --decode-size there is a resize of the decoded frame
    on the GPU (here the CPU stands in for it), not a traceback."""
    import torchcodec.decoders

    from framescope.sources import SourceSpec, TorchCodecSource

    FakeVideoDecoder.made = []
    monkeypatch.setattr(torchcodec.decoders, "VideoDecoder", FakeVideoDecoder)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    source = TorchCodecSource(SourceSpec("file", str(clip)), on_gpu=True)
    source.open()
    source.set_output_size((320, 180))
    frames = frames_of_open(source)
    assert [tuple(f.image.shape) for f in frames] == [(3, 180, 320)] * 3
    assert all(made["transforms"] is None for made in FakeVideoDecoder.made)


def frames_of_open(source: Source) -> list[Any]:
    out = []
    while (frame := source.read()) is not None:
        out.append(frame)
    return out
