from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import run_cli

import framescope
from framescope import RunConfig
from framescope.config import ModelConfig
from framescope.errors import ConfigError, ModelError
from framescope.models import SplitModel, build_model, make_runner, parse_split_point, split_points

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet50", "layer3"),
        ("resnet18", "fc"),
        ("mobilenet_v3_large", "features.7"),
        ("efficientnet_b0", "features.4"),
        pytest.param("vit_b_16", "encoder.layers.encoder_layer_6", marks=pytest.mark.slow),
        ("swin_t", "features.4"),
    ],
)
def test_split_output_equals_the_unsplit_model(name: str, layer: str) -> None:
    model = build_model(name).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
        split = SplitModel(model, name, layer, first=CPU, second=CPU)
        got = split(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_parts_share_the_original_parameters() -> None:
    model = build_model("resnet18")
    split = SplitModel(model, "resnet18", "layer3", first=CPU, second=CPU)
    assert {id(p) for p in split.parameters()} == {id(p) for p in model.parameters()}


def test_listed_split_points() -> None:
    points = split_points(build_model("resnet50"), "resnet50")
    assert points[:4] == ["bn1", "relu", "maxpool", "layer1"]
    assert {"layer3", "layer3.2", "avgpool", "fc"} <= set(points)
    assert not any("downsample" in p for p in points)  # cuts inside a residual block are not listed
    vit = split_points(build_model("vit_b_16"), "vit_b_16")
    assert "encoder.layers.encoder_layer_6" in vit and "heads" in vit


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(
        ModelError, match=r"'layer9' is not a split point of resnet18; valid split points: bn1, .*layer3"
    ):
        SplitModel(build_model("resnet18"), "resnet18", "layer9", first=CPU, second=CPU)


def test_the_first_layer_is_no_split_point() -> None:
    with pytest.raises(ModelError, match="'conv1' is not a split point"):
        SplitModel(build_model("resnet18"), "resnet18", "conv1", first=CPU, second=CPU)


def test_models_torch_fx_cannot_trace_are_refused_clearly() -> None:
    with pytest.raises(
        ModelError, match=r"cannot split ssdlite320_mobilenet_v3_large: torch.fx cannot trace"
    ):
        split_points(build_model("ssdlite320_mobilenet_v3_large"), "ssdlite320_mobilenet_v3_large")


def test_split_point_syntax() -> None:
    assert parse_split_point("resnet50:layer3") == ("resnet50", "layer3")
    assert parse_split_point("layer3") == (None, "layer3")
    with pytest.raises(
        ConfigError, match=r"is for resnet50, but the model is resnet18; write resnet18:layer3"
    ):
        ModelConfig(name="resnet18", split_point="resnet50:layer3")
    with pytest.raises(ConfigError, match="names no layer"):
        ModelConfig(name="resnet18", split_point="resnet18:")


def test_retrain_through_a_split_trains_only_the_head() -> None:
    model = build_model("resnet18")
    config = ModelConfig(name="resnet18", mode="retrain", split_point="resnet18:layer3", num_classes=4)
    runner = make_runner(model, "classification", config, CPU)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    head = model.fc.weight.detach().clone()
    result = runner(torch.randn(2, 3, 224, 224))
    assert result.output.shape == (2, 4) and result.loss is not None and result.loss > 0
    assert not torch.equal(model.fc.weight, head)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def run_split(out_dir: Path, clip: Path, **flat: Any) -> framescope.RunResult:
    flat.setdefault("split_point", "resnet18:layer3")
    return framescope.run(
        RunConfig.from_flat(
            model_name="resnet18",
            input_path=str(clip),
            batch_size=4,
            max_steps=4,
            output_dir=str(out_dir),
            progress="none",
            **flat,
        )
    )


def test_run_with_a_split_times_the_transfer_as_its_own_column(clip: Path, out_dir: Path) -> None:
    result = run_split(out_dir, clip)
    rows = result.rows
    assert (rows["split_transfer_latency_ms"] > 0).all()
    assert (rows["exec_latency_ms"] > rows["split_transfer_latency_ms"]).all()
    stages = rows[["read_latency_ms", "prep_latency_ms", "exec_latency_ms", "split_transfer_latency_ms"]].sum(
        axis=1
    )
    assert (rows["total_step_latency_ms"] >= stages).all()  # the transfer is not counted twice
    assert result.summary["model"]["split"] == {"before": "layer3", "first_part": "cpu", "second_part": "cpu"}
    assert "split_transfer_latency_ms" in result.summary["stages"]


def test_run_without_a_split_leaves_the_column_empty(clip: Path, out_dir: Path) -> None:
    result = run_split(out_dir, clip, split_point=None)
    assert result.rows["split_transfer_latency_ms"].isna().all()


def test_cli_takes_the_model_from_the_split_point(clip: Path, out_dir: Path) -> None:
    result = run_cli(
        "run", "--split-point", "resnet18:layer3", "--input_path", str(clip), "--max-steps", "2",
        "--output-dir", str(out_dir), "--run-name", "s",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (out_dir / "s" / f"M_resnet18_P_{__import__('os').getpid()}_metrics.csv").exists()
    bad = run_cli(
        "run", "--split-point", "resnet18:layer9", "--input_path", str(clip), "--output-dir", str(out_dir)
    )
    assert bad.code == 2 and "valid split points: bn1" in bad.err and len(bad.err.strip().splitlines()) == 1
    listed = run_cli("models", "--split-points", "resnet18")
    assert listed.code == 0 and "layer3" in listed.out.split()


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("name", "layer"), [("resnet50", "layer3"), ("vit_b_16", "encoder.layers.encoder_layer_6")]
)
def test_split_across_cpu_and_gpu_equals_the_unsplit_model(name: str, layer: str) -> None:
    model = build_model(name).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x)
        split = SplitModel(model, name, layer, first=CPU, second=torch.device("cuda"))
        got = split(x)
    assert got.is_cuda
    assert torch.allclose(got.cpu(), expected, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
def test_run_split_onto_the_gpu(clip: Path, out_dir: Path) -> None:
    result = run_split(out_dir, clip, infer_on_gpu=True)
    assert result.summary["model"]["split"]["second_part"] == "cuda"
    assert (result.rows["split_transfer_latency_ms"] > 0).all()
    assert result.rows["h2d_latency_ms"].isna().all()  # the input stays on the CPU for the first part


DETECTOR = "ssdlite320_mobilenet_v3_large"
REFUSED = "is a detection model, and detection models cannot be split; drop --split-point"


@pytest.mark.parametrize("mode", ["inference", "retrain"])
def test_runners_refuse_to_split_a_detection_model(mode: str) -> None:
    model = build_model(DETECTOR)
    config = ModelConfig(name=DETECTOR, mode=mode, split_point=f"{DETECTOR}:backbone")
    with pytest.raises(ModelError, match=rf"^--split-point '{DETECTOR}:backbone': {DETECTOR} {REFUSED}"):
        make_runner(model, "detection", config, CPU)
    assert all(p.requires_grad for p in model.parameters())  # refused before retrain froze the backbone


@pytest.mark.parametrize("mode", ["inference", "retrain"])
@pytest.mark.parametrize("layer", ["backbone", "no_such_layer"])
def test_cli_refuses_to_split_a_detection_model(mode: str, layer: str, out_dir: Path) -> None:
    result = run_cli(
        "run", "--model-name", DETECTOR, "--split-point", f"{DETECTOR}:{layer}", "--mode", mode,
        "--input_path", "synthetic:64x64:2", "--max-steps", "1", "--output-dir", str(out_dir),
    )  # fmt: skip
    assert result.code == 2, result.err
    assert result.err.strip().splitlines() == [
        f"framescope: error: --split-point '{DETECTOR}:{layer}': {DETECTOR} {REFUSED}, or split a "
        "classification or segmentation model (framescope models --split-points MODEL lists its layers)."
    ]
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no run directory: no step ran


def test_run_refuses_to_split_a_detection_model(out_dir: Path) -> None:
    config = RunConfig.from_flat(
        model_name=DETECTOR,
        split_point="backbone",
        input_path="synthetic:64x64:2",
        max_steps=1,
        output_dir=str(out_dir),
        progress="none",
    )
    with pytest.raises(ModelError, match=rf"^--split-point 'backbone': {DETECTOR} {REFUSED}"):
        framescope.run(config)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_with_amp_each_part_runs_under_its_own_devices_autocast() -> None:
    """An autocast for the model's device (CUDA) does not reach the CPU part's ops; each part autocasts on
    its own device, so the CPU half runs in bfloat16 too. Checked with no outer autocast at all, which is
    what the CPU part saw under the CUDA one."""
    crossing: list[torch.dtype] = []
    split = SplitModel(
        build_model("resnet18").eval(),
        "resnet18",
        "layer3",
        first=torch.device("cpu"),
        second=torch.device("cpu"),
        amp=True,
        span=lambda name: _record(crossing, name),
    )
    split.parts.submod_1.part.register_forward_pre_hook(lambda module, args: crossing.append(args[0].dtype))
    with torch.inference_mode():
        out = split(torch.randn(1, 3, 64, 64))
    assert crossing == ["split", torch.bfloat16] and out.dtype == torch.bfloat16


def _record(log: list[Any], name: str) -> Any:
    import contextlib

    log.append(name)
    return contextlib.nullcontext()


def test_warm_up_transfers_are_not_counted_in_step_zero() -> None:
    """The split transfer's span is open during the untimed warm-up too: what it recorded is discarded before
    the first step (on a GPU, into the CUDA-event timer whose intervals step 0 would otherwise take)."""
    from tests.test_async import FakeEvent

    from framescope.instrument import StageTimer
    from framescope.instrument.events import EventTimer
    from framescope.pipeline import Timers

    device: dict[str, Any] = {"time": 0.0, "events": [], "finished": True, "synchronized": 0}
    timers = Timers(StageTimer(), EventTimer(lambda: FakeEvent(device)))
    with timers.device_span(on_gpu=True)("split"), timers.device_span(on_gpu=False)("split"):
        device["time"] += 0.5
    timers.discard_warmup()
    assert timers.events is not None and timers.events.take().resolve() == {}
    assert timers.model.samples == {}
