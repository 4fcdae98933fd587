"""--backend onnxruntime: export and cache, the session, agreement with torch, the run end to end.

The ONNX tests skip when onnxruntime, onnx or onnxscript are missing (``pip install -e '.[onnx]'``; the
development environment has them). Exports go to a cache directory of this module, shared by its tests, so
each model is exported once per test session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from tests.conftest import CLIP_FRAMES, run_cli

import framescope
from framescope import RunConfig
from framescope.errors import ConfigError, DeviceError, ModelError
from framescope.models import _onnx, build_model
from framescope.models._onnx import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxRunner,
    binding_for,
    cached_export,
    import_onnxruntime,
    open_session,
    resolve_shape,
)
from framescope.records import SEED_COLUMNS

RELATIVE_TOLERANCE = 1e-5
"""ONNX Runtime's outputs agree with torch's within this fraction of the output's largest magnitude
(measured: under 1e-6 for resnet18, mobilenet_v3_small and lraspp_mobilenet_v3_large)."""


def needs_onnx() -> None:
    for module in ("onnxruntime", "onnx", "onnxscript"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[onnx]')")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def export(model: torch.nn.Module, name: str, task: str, cache: Path, **options: Any) -> _onnx.OnnxFile:
    options.setdefault("weights", "none")
    options.setdefault("seed", 0)
    options.setdefault("input_shape", (3, 224, 224))
    return cached_export(model, name, task, cache_dir=cache, **options)


def agreement(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest difference, as a fraction of the expected output's largest magnitude."""
    return float((actual - expected).abs().max() / expected.abs().max())


# --- settings: refused combinations, before anything is built ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--mode", "retrain"], "--mode retrain"),
        (["--enable-compile"], "--enable-compile"),
        (["--split-point", "resnet18:layer3"], "--split-point"),
        (["--use-amp"], "--use-amp"),
    ],
)
def test_combinations_onnxruntime_cannot_run_are_refused(
    flags: list[str], named: str, tmp_path: Path
) -> None:
    result = run_cli(
        "run", "--model-name", "resnet18", "--input_path", "synthetic:32x32:2", "--backend", "onnxruntime",
        "--output-dir", str(tmp_path), *flags,
    )  # fmt: skip
    assert result.code == 2
    message = result.err.strip()
    assert len(message.splitlines()) == 1, message
    assert named in message and "--backend torch" in message


def test_backend_is_a_validated_setting() -> None:
    config = RunConfig.from_flat(model_name="resnet18", input_path="synthetic:", backend="onnxruntime")
    assert config.model.backend == "onnxruntime"
    assert config.to_dict()["model"]["backend"] == "onnxruntime"
    assert RunConfig.from_flat(model_name="resnet18", input_path="synthetic:").model.backend == "torch"
    with pytest.raises(ConfigError, match="--backend"):
        RunConfig.from_flat(model_name="resnet18", input_path="synthetic:", backend="tensorrt")


def test_detection_models_are_refused_with_the_reason(tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model-name", "ssdlite320_mobilenet_v3_large", "--input_path", "synthetic:64x64:2",
        "--backend", "onnxruntime", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "detection" in result.err and "--backend torch" in result.err
    assert not (tmp_path / "runs").exists()


def test_missing_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ModelError, match=r"framescope\[onnx\]"):
        import_onnxruntime()


# --- binding decisions, without a GPU ---------------------------------------------------------------------


def test_binding_follows_the_provider() -> None:
    assert binding_for(CPU_PROVIDER, torch.device("cpu")) == "run"
    assert binding_for(CUDA_PROVIDER, torch.device("cuda")) == "io_binding"
    assert binding_for(CUDA_PROVIDER, torch.device("cpu")) == "io_binding"  # the provider copies it in
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        binding_for(CPU_PROVIDER, torch.device("cuda"))


def test_output_shapes_resolve_from_the_input_symbols() -> None:
    assert resolve_shape(["s77", 1000], ["s77", 3, 224, 224], (8, 3, 224, 224)) == (8, 1000)
    assert resolve_shape(["s1", 21, "s2", "s3"], ["s1", 3, "s2", "s3"], (2, 3, 120, 160)) == (2, 21, 120, 160)
    assert resolve_shape(["n", 1000], ["s77", 3, 224, 224], (8, 3, 224, 224)) is None  # the session allocates
    assert resolve_shape([None, 4], [None, 3], (2, 3)) is None


def test_providers_for_the_cpu() -> None:
    assert _onnx.providers_for(torch.device("cpu")) == [CPU_PROVIDER]


# --- export, cache, session -------------------------------------------------------------------------------


def tiny_model() -> torch.nn.Module:
    """A classifier small enough to export in a second: the cache and session tests need no real model."""
    torch.manual_seed(0)
    layers = [
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
    ]
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()


TINY_SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture(scope="module")
def tiny_file(tiny: torch.nn.Module, onnx_cache: Path) -> _onnx.OnnxFile:
    needs_onnx()
    return export(tiny, "tiny", "classification", onnx_cache, input_shape=TINY_SHAPE)


def test_cache_is_reused_and_keyed_by_input_shape_and_seed(
    tiny: torch.nn.Module, tiny_file: _onnx.OnnxFile, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = tiny_file.path.stat().st_mtime_ns
    exports: list[tuple[int, ...]] = []
    real_export = _onnx.export_onnx

    def counting(model: torch.nn.Module, task: str, shape: Any, target: Path) -> None:
        exports.append(tuple(shape))
        real_export(model, task, shape, target)

    monkeypatch.setattr(_onnx, "export_onnx", counting)
    again = export(tiny, "tiny", "classification", onnx_cache, input_shape=TINY_SHAPE)
    assert (again.path, again.cache, exports) == (tiny_file.path, "hit", [])
    assert again.path.stat().st_mtime_ns == stamp
    other_seed = export(tiny, "tiny", "classification", onnx_cache, input_shape=TINY_SHAPE, seed=1)
    larger = export(tiny, "tiny", "classification", onnx_cache, input_shape=(3, 48, 48))
    assert (other_seed.cache, larger.cache) == ("exported", "exported")
    assert exports == [TINY_SHAPE, (3, 48, 48)]
    assert len({tiny_file.path, other_seed.path, larger.path}) == 3
    assert not [p for p in onnx_cache.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_session_threads_follow_the_plan(tiny: torch.nn.Module, tiny_file: _onnx.OnnxFile) -> None:
    runner = OnnxRunner(tiny, "classification", tiny_file, torch.device("cpu"), threads=1)
    options = runner.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    info = runner.info()
    assert info["provider"] == CPU_PROVIDER and info["intra_op_threads"] == 1 and info["binding"] == "run"
    assert info["version"] == import_onnxruntime().__version__
    assert info["file"] == str(tiny_file.path)


def test_outputs_agree_with_torch_on_any_batch_size(tiny: torch.nn.Module, tiny_file: _onnx.OnnxFile) -> None:
    runner = OnnxRunner(tiny, "classification", tiny_file, torch.device("cpu"), threads=2)
    generator = torch.Generator().manual_seed(0)
    for batch_size in (1, 3):  # exported with a batch of 2: the batch axis is dynamic
        batch = torch.randn(batch_size, *TINY_SHAPE, generator=generator)
        with torch.inference_mode():
            expected = tiny(batch)
        output = runner(batch).output
        assert isinstance(output, torch.Tensor) and output.shape == expected.shape
        assert agreement(output, expected) < RELATIVE_TOLERANCE


def test_io_binding_path_runs_on_the_cpu(tiny: torch.nn.Module, tiny_file: _onnx.OnnxFile) -> None:
    """The GPU's path (bind input and outputs by data pointer into torch tensors), exercised on CPU memory."""
    cpu = torch.device("cpu")
    bound = OnnxRunner(tiny, "classification", tiny_file, cpu, threads=1, binding="io_binding")
    plain = OnnxRunner(tiny, "classification", tiny_file, cpu, threads=1)
    batch = torch.randn(2, *TINY_SHAPE, generator=torch.Generator().manual_seed(1))
    assert torch.equal(bound(batch).output, plain(batch).output)


def test_a_damaged_cache_file_is_exported_again(tiny: torch.nn.Module, tmp_path: Path) -> None:
    needs_onnx()
    first = export(tiny, "tiny", "classification", tmp_path, input_shape=TINY_SHAPE)
    size = first.path.stat().st_size
    first.path.write_bytes(first.path.read_bytes()[: size // 2])  # a copy cut short
    again = export(tiny, "tiny", "classification", tmp_path, input_shape=TINY_SHAPE)
    assert (again.path, again.cache) == (first.path, "replaced_damaged")
    assert again.path.stat().st_size == size
    OnnxRunner(tiny, "classification", again, torch.device("cpu"), threads=1)  # loads


def test_a_changed_weights_file_is_exported_again(tiny: torch.nn.Module, tmp_path: Path) -> None:
    needs_onnx()
    weights = tmp_path / "w.pt"
    torch.save(tiny.state_dict(), weights)
    options: dict[str, Any] = {"weights": str(weights), "input_shape": TINY_SHAPE}
    first = export(tiny, "tiny", "classification", tmp_path / "cache", **options)
    assert export(tiny, "tiny", "classification", tmp_path / "cache", **options).cache == "hit"
    other = tiny_model()
    torch.nn.init.normal_(other[-1].weight)
    torch.save(other.state_dict(), weights)
    os.utime(weights, ns=(0, first.path.stat().st_mtime_ns + 1))  # a new time, whatever the clock's grain
    second = export(other, "tiny", "classification", tmp_path / "cache", **options)
    assert second.cache == "exported" and second.path != first.path


def test_cuda_without_the_cuda_provider_is_an_error(tiny_file: _onnx.OnnxFile) -> None:
    if CUDA_PROVIDER in import_onnxruntime().get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        open_session(tiny_file.path, threads=1, device=torch.device("cuda"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "task", "shape"),
    [
        ("resnet18", "classification", (3, 224, 224)),
        ("mobilenet_v3_small", "classification", (3, 224, 224)),
        ("lraspp_mobilenet_v3_large", "segmentation", (3, 120, 160)),
    ],
)
def test_more_models_agree_with_torch(name: str, task: str, shape: tuple[int, ...], onnx_cache: Path) -> None:
    needs_onnx()
    model = build_model(name, seed=0).eval()
    onnx_file = export(model, name, task, onnx_cache, input_shape=shape)
    cpu = torch.device("cpu")
    batch = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2))
    if task == "segmentation":  # height and width are dynamic too: a frame size other than the export's
        batch = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(batch)
    for binding in ("run", "io_binding"):
        output = OnnxRunner(model, task, onnx_file, cpu, threads=2, binding=binding)(batch).output
        if task == "segmentation":
            assert list(output) == list(expected)
            output, expected_out = output["out"], expected["out"]
        else:
            expected_out = expected
        assert output.shape == expected_out.shape
        assert agreement(output, expected_out) < RELATIVE_TOLERANCE, binding


@pytest.mark.gpu
def test_io_binding_keeps_the_batch_on_the_gpu(onnx_cache: Path) -> None:
    needs_onnx()
    resnet18 = build_model("resnet18", seed=0).eval()
    if CUDA_PROVIDER not in import_onnxruntime().get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    onnx_file = export(resnet18, "resnet18", "classification", onnx_cache)
    runner = OnnxRunner(resnet18, "classification", onnx_file, torch.device("cuda"), threads=1)
    assert (runner.provider, runner.binding) == (CUDA_PROVIDER, "io_binding")
    batch = torch.randn(4, 3, 224, 224, device="cuda")
    output = runner(batch).output
    assert output.is_cuda
    with torch.inference_mode():
        expected = resnet18.cuda()(batch)
    assert agreement(output, expected) < 1e-3  # cuDNN and ORT's CUDA kernels pick different algorithms


# --- the run ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_with_onnxruntime(
    clip: Path, out_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_onnx()
    monkeypatch.setenv("FRAMESCOPE_CACHE", str(onnx_cache.parent / "run-cache"))
    flat: dict[str, Any] = {
        "model_name": "mobilenet_v3_small",
        "batch_size": 4,
        "progress": "none",
        "backend": "onnxruntime",
        "output_dir": str(out_dir),
    }
    result = framescope.run(RunConfig.from_flat(input_path=str(clip), run_name="first", **flat))
    rows = result.rows
    assert list(rows.columns[:6]) == list(SEED_COLUMNS)
    assert len(rows) == -(-CLIP_FRAMES // 4)
    assert (rows["exec_latency_ms"] > 0).all() and rows["post_latency_ms"].notna().all()
    model = result.summary["model"]
    assert model["backend"] == "onnxruntime"
    ort = model["onnxruntime"]
    assert ort["provider"] == CPU_PROVIDER and ort["cache"] == "exported"
    assert ort["intra_op_threads"] == result.summary["threads"]["torch"]
    assert (
        Path(ort["file"]).is_file() and Path(ort["file"]).parent == onnx_cache.parent / "run-cache" / "onnx"
    )
    assert result.summary["setup"]["onnx_export_s"] > 0
    assert result.config["model"]["backend"] == "onnxruntime"
    again = RunConfig.from_flat(
        input_path=str(clip), run_name="second", max_steps=4, pipeline="async", **flat
    )
    second = framescope.run(again)
    assert second.summary["model"]["onnxruntime"]["cache"] == "hit"
    # the async thread trial sets torch's threads, which the session does not follow: it is not run
    assert any("onnxruntime's session keeps" in note for note in second.summary["threads"]["notes"])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["serial", "threads", "processes"])
def test_several_models_with_onnxruntime(
    clip: Path, out_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """The seed's experiment as one command: several models per frame, each an ONNX Runtime session."""
    needs_onnx()
    monkeypatch.setenv("FRAMESCOPE_CACHE", str(onnx_cache.parent / "multi-cache"))
    result = framescope.run(
        RunConfig.from_flat(
            model_name="mobilenet_v3_small,resnet18", input_path=str(clip), batch_size=4, max_steps=4,
            backend="onnxruntime", multi_model=strategy, torch_threads=1, progress="none",
            output_dir=str(out_dir), run_name=strategy,
        )
    )  # fmt: skip
    assert result.status == "complete", result.summary.get("error")
    models = result.summary["models"]
    assert set(models) == {"mobilenet_v3_small", "resnet18"}
    for name, entry in models.items():
        assert entry["backend"] == "onnxruntime", entry
        assert entry["onnxruntime"]["provider"] == CPU_PROVIDER
        csv = next(result.run_dir.glob(f"M_{name}_P_*_metrics.csv"))
        rows = pd.read_csv(csv)
        assert len(rows) == 4 and (rows["exec_latency_ms"] > 0).all()
