from __future__ import annotations

import pickle
import urllib.error
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import run_cli

from framescope.config import ModelConfig
from framescope.errors import ModelError
from framescope.models import RetrainRunner, build_model, input_spec, make_runner, models_by_task, task_of
from framescope.preprocess import Preprocessor

CPU = torch.device("cpu")


def batch_for(name: str, model: torch.nn.Module, n: int = 2, h: int = 120, w: int = 160) -> torch.Tensor:
    frames = torch.randint(
        0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    out = Preprocessor("simple", input_spec(name, model))(frames)
    assert isinstance(out, torch.Tensor)
    return out


def test_tasks() -> None:
    groups = models_by_task()
    assert {"resnet50", "vit_b_16", "mobilenet_v3_small"} <= set(groups["classification"])
    assert {
        "ssd300_vgg16",
        "fasterrcnn_resnet50_fpn_v2",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
    } <= set(groups["detection"])
    assert "deeplabv3_resnet50" in groups["segmentation"]
    assert task_of("ssdlite320_mobilenet_v3_large") == "detection"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(
        ModelError, match=r"unknown model 'resnet5'; did you mean resnet50.*framescope models"
    ):
        task_of("resnet5")


def test_video_models_are_refused_clearly() -> None:
    with pytest.raises(ModelError, match="video, optical-flow or quantized model"):
        task_of("r3d_18")


@pytest.mark.parametrize(
    ("name", "size", "resize", "normalised"),
    [
        ("resnet50", (224, 224), 232, True),
        ("inception_v3", (299, 299), 342, True),
        ("vit_b_16", (224, 224), 256, True),
        ("ssdlite320_mobilenet_v3_large", (320, 320), 320, False),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", None, 320, False),
        ("lraspp_mobilenet_v3_large", None, 520, True),
    ],
)
def test_input_size_comes_from_the_model(
    name: str, size: tuple[int, int] | None, resize: int, normalised: bool
) -> None:
    spec = input_spec(name, build_model(name))
    assert (spec.size, spec.resize, spec.mean is not None) == (size, resize, normalised)


def test_random_weights_are_seeded() -> None:
    a = build_model("mobilenet_v3_small", seed=3).state_dict()
    b = build_model("mobilenet_v3_small", seed=3).state_dict()
    c = build_model("mobilenet_v3_small", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_weights_file_round_trip(tmp_path: Path) -> None:
    original = build_model("mobilenet_v3_small", seed=7)
    path = tmp_path / "weights.pt"
    torch.save(
        {"model": {f"module.{k}": v for k, v in original.state_dict().items()}}, path
    )  # a DDP checkpoint
    loaded = build_model("mobilenet_v3_small", str(path), seed=99)
    x = batch_for("mobilenet_v3_small", original)
    with torch.inference_mode():
        assert torch.allclose(original.eval()(x), loaded.eval()(x))


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(build_model("resnet18").state_dict(), path)
    with pytest.raises(
        ModelError, match=r"does not match mobilenet_v3_small: .* missing .* was it saved from"
    ):
        build_model("mobilenet_v3_small", str(path))


def test_a_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="is not a PyTorch state dict"):
        build_model("resnet18", str(path))
    with pytest.raises(ModelError, match="does not exist"):
        build_model("resnet18", str(tmp_path / "missing.pt"))


def old_protocol_pickles(tmp_path: Path) -> list[Path]:
    """Weights files torch.load(weights_only=True) warns about: torch's legacy format with pickle protocol 4,
    and a plain pickle."""
    legacy = tmp_path / "legacy.pt"
    state = build_model("resnet18").state_dict()
    torch.save(state, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    plain = tmp_path / "plain.pkl"
    with plain.open("wb") as file:
        pickle.dump({"not": "weights"}, file, protocol=4)
    return [legacy, plain]


def test_old_protocol_pickles_give_one_error_and_no_warning(tmp_path: Path) -> None:
    for path in old_protocol_pickles(tmp_path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(
                ModelError, match=r"is not a PyTorch state dict .*torch.save\(model.state_dict"
            ):
                build_model("resnet18", str(path))
        assert [str(w.message) for w in caught] == []


def test_cli_old_protocol_pickle_prints_only_framescope_s_line(tmp_path: Path) -> None:
    for path in old_protocol_pickles(tmp_path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # what a user's interpreter shows: every warning, on stderr
            result = run_cli(
                "run", "--model-name", "resnet18", "--input_path", "synthetic:64x64:2",
                "--weights", str(path), "--output-dir", str(tmp_path / "runs"),
            )  # fmt: skip
        assert [str(w.message) for w in caught] == []
        assert result.code == 2
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("framescope: error: weights file"), result.err


def test_legacy_format_state_dict_still_loads_quietly(tmp_path: Path) -> None:
    original = build_model("mobilenet_v3_small", seed=7)
    path = tmp_path / "legacy.pt"
    torch.save(original.state_dict(), path, _use_new_zipfile_serialization=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = build_model("mobilenet_v3_small", str(path), seed=99)
    assert [str(w.message) for w in caught] == []
    expected = original.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


def test_a_weights_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError,
        match=r"^weights path '.*' is a directory, not a file; pass a state-dict file \(saved with "
        r"torch.save\(model.state_dict\(\), path\)\), or --weights none or DEFAULT.$",
    ):
        build_model("resnet18", str(tmp_path))
    torch.save(build_model("resnet18").state_dict(), tmp_path / "best.pt")
    with pytest.raises(
        ModelError, match=r"is a directory, not a file; pass a state-dict file \(e.g. --weights .*best.pt\)"
    ):
        build_model("resnet18", str(tmp_path))


def test_cli_weights_directory(tmp_path: Path) -> None:
    weights = tmp_path / "checkpoints"
    weights.mkdir()
    result = run_cli(
        "run", "--model-name", "resnet18", "--input_path", "synthetic:64x64:2", "--weights", str(weights),
        "--output-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"framescope: error: weights path {str(weights)!r} is a directory, not a file; pass a state-dict "
        "file (saved with torch.save(model.state_dict(), path)), or --weights none or DEFAULT."
    ]


def test_default_weights_offline_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(
        ModelError, match=r"could not download the DEFAULT weights of resnet18 .*--weights PATH"
    ):
        build_model("resnet18", "DEFAULT")


def test_detection_models_do_not_download_backbones(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    build_model("ssdlite320_mobilenet_v3_large")
    build_model("lraspp_mobilenet_v3_large")


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("resnet18", "fc"),
        ("mobilenet_v3_small", "classifier.3"),
        ("squeezenet1_1", "classifier.1"),
        pytest.param("vit_b_16", "heads.head", marks=pytest.mark.slow),
        ("swin_t", "head"),
        ("densenet121", "classifier"),
    ],
)
def test_retrain_replaces_the_head_and_trains_only_it(name: str, head: str) -> None:
    model = build_model(name)
    runner = make_runner(model, "classification", ModelConfig(name=name, mode="retrain", num_classes=5), CPU)
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {head}
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    head_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = runner(batch_for(name, model, h=224, w=224))
    assert result.output.shape == (2, 5)
    assert result.loss is not None and 0 < result.loss < 50
    assert model.training
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), f"frozen parameter {n} changed"
    assert any(not torch.equal(p, head_before[n]) for n, p in model.named_parameters() if n in head_before)


def test_retrain_inception_uses_the_main_logits() -> None:
    model = build_model("inception_v3")
    runner = make_runner(model, "classification", ModelConfig(name="inception_v3", mode="retrain"), CPU)
    result = runner(batch_for("inception_v3", model))
    assert result.loss is not None and 0 < result.loss < 50


def test_retrain_segmentation_replaces_both_lraspp_classifiers() -> None:
    name = "lraspp_mobilenet_v3_large"
    model = build_model(name)
    runner = make_runner(model, "segmentation", ModelConfig(name=name, mode="retrain", num_classes=4), CPU)
    result = runner(batch_for(name, model))
    assert result.output["out"].shape[1] == 4
    assert result.loss is not None and result.loss > 0


def test_retrain_detection_trains_all_but_the_backbone() -> None:
    name = "ssdlite320_mobilenet_v3_large"
    model = build_model(name)
    runner = make_runner(model, "detection", ModelConfig(name=name, mode="retrain"), CPU)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert any(p.requires_grad for p in model.head.parameters())
    result = runner(batch_for(name, model))
    assert set(result.output) == {"bbox_regression", "classification"}
    assert result.loss is not None and result.loss > 0


def test_inference_outputs_per_task() -> None:
    from framescope.models._detection import RawDetections
    from framescope.postprocess import make_postprocess

    for name, task in (
        ("mobilenet_v3_small", "classification"),
        ("ssdlite320_mobilenet_v3_large", "detection"),
    ):
        model = build_model(name)
        runner = make_runner(model, task, ModelConfig(name=name), CPU)
        result = runner(batch_for(name, model))
        assert result.loss is None
        if task == "detection":  # the model stage stops before post-processing
            assert isinstance(result.output, RawDetections)
            detections = make_postprocess(task, runner.model)(result.output)
            assert len(detections) == 2 and {"boxes", "scores", "labels"} <= set(detections[0])
        else:
            assert result.output.shape == (2, 1000)
        assert not model.training


def test_cpu_amp_runs_in_bfloat16() -> None:
    model = build_model("resnet18")
    runner = make_runner(model, "classification", ModelConfig(name="resnet18", amp=True), CPU)
    assert runner(batch_for("resnet18", model)).output.dtype == torch.bfloat16


@pytest.mark.slow
def test_compile_with_a_cheap_backend_gives_the_same_output() -> None:
    model = build_model("mobilenet_v3_small")
    x = batch_for("mobilenet_v3_small", model)
    eager = make_runner(model, "classification", ModelConfig(name="mobilenet_v3_small"), CPU)(x).output
    compiled = make_runner(
        model,
        "classification",
        ModelConfig(name="mobilenet_v3_small", compile=True, compile_backend="aot_eager"),
        CPU,
    )
    assert torch.allclose(compiled(x).output, eager, atol=1e-4)


def test_retrain_warm_up_does_not_train() -> None:
    model = build_model("resnet18")
    runner = make_runner(model, "classification", ModelConfig(name="resnet18", mode="retrain"), CPU)
    assert isinstance(runner, RetrainRunner)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = runner.generator.get_state()
    runner.warm_up(batch_for("resnet18", model))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), (
        "warm-up changed weights or BatchNorm statistics"
    )
    assert torch.equal(runner.generator.get_state(), labels)
    assert all(p.grad is None for p in model.parameters())


def test_a_copy_to_the_host_waits_once_for_every_copy_it_issued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Device tensors are copied to the host without blocking, so they overlap; the host then waits once,
    before anything reads them (reading a non-blocking copy early reads a half-written buffer)."""
    from framescope.models import RawDetections, to_host

    calls: list[str] = []
    original_to = torch.Tensor.to

    def spy_to(self: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        calls.append(f"copy non_blocking={kw.get('non_blocking')}")
        return original_to(self, *args, **kw)

    monkeypatch.setattr("framescope.models._move.on_device", lambda tensor: True)
    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    value = {"logits": torch.ones(2, 3), "anchors": [torch.zeros(4, 4), torch.zeros(2, 4)]}
    moved = to_host(value, wait=lambda: calls.append("wait"))
    assert calls == ["copy non_blocking=True"] * 3 + ["wait"]
    assert torch.equal(moved["logits"], value["logits"]) and len(moved["anchors"]) == 2
    calls.clear()
    monkeypatch.setattr("framescope.models._move._wait_for_copies", lambda: calls.append("wait"))
    raw = RawDetections("ssd", value, [(300, 300)], [(240, 320)])
    assert isinstance(raw.to(torch.device("cpu")), RawDetections)
    assert calls == ["copy non_blocking=True"] * 3 + ["wait"]  # RawDetections.to(cpu) is such a copy


def test_nothing_on_the_host_is_copied_or_waited_for() -> None:
    from framescope.models import to_host

    value = [torch.ones(2)]
    assert to_host(value, wait=lambda: pytest.fail("waited for nothing"))[0] is value[0]


def test_move_never_leaves_a_copy_to_the_host_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    from framescope.models import move

    seen: list[Any] = []
    original_to = torch.Tensor.to

    def spy_to(self: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        seen.append(kw.get("non_blocking"))
        return original_to(self, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    move({"a": torch.ones(1)}, torch.device("cpu"), non_blocking=True)
    assert seen == [False]


def test_a_cpu_training_step_uses_the_plain_optimizer() -> None:
    """The fused SGD (no host read of the GradScaler's inf check) is for parameters on CUDA only."""
    model = build_model("mobilenet_v3_small")
    runner = make_runner(model, "classification", ModelConfig(name="mobilenet_v3_small", mode="retrain"), CPU)
    assert not runner.optimizer.defaults.get("fused")
