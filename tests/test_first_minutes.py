"""The first five minutes: a run's start fits the terminal and shows what differs from the defaults; a bare
or misspelt ``framescope run`` teaches by example; ``framescope doctor`` says what the machine can do, each
optional feature checked present and absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.conftest import run_cli

from framescope import doctor
from framescope.cli._progress import changed_flags
from framescope.config import RunConfig

# --- the start of a run ----------------------------------------------------------------------------------


def test_only_the_settings_that_differ_from_the_defaults_are_listed() -> None:
    config = RunConfig.from_flat(
        model_name="resnet18", input_path="sample:", batch_size=8, prep_level="medium", max_steps=30,
        use_amp=True, output_dir="elsewhere",
    )  # fmt: skip
    # --prep-level medium is the default: not listed; the output directory has a line of its own
    assert changed_flags(config) == ["--use-amp", "--batch-size", "8", "--max-steps", "30"]
    assert changed_flags(RunConfig.from_flat(model_name="resnet18", input_path="sample:")) == []
    secret = RunConfig.from_flat(model_name="resnet18", input_path="x.mp4", cameras=2, deadline_ms=50.0)
    assert changed_flags(secret) == ["--cameras", "2", "--deadline-ms", "50.0"]


def test_the_demo_output_fits_in_100_columns_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "framescope", "run", "--model-name", "resnet18", "--input_path", "sample:",
         "--batch-size", "8", "--prep-level", "medium", "--max-steps", "6", "--output-dir", "runs"],
        capture_output=True, text=True, check=False, timeout=300, env={**os.environ, "COLUMNS": "100"},
        cwd=tmp_path,  # as make demo: runs/ under the working directory
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    wide = [line for line in text.splitlines() if len(line) > 100]
    assert wide == [], wide
    # nothing warns about what framescope chose; glibc's page faults are this process's own, measured, and
    # come with their fix (--malloc retain: tests/test_malloc.py)
    warned = [line for line in text.splitlines() if "warning" in line.lower()]
    assert all("[allocator_page_faults]" in line for line in warned), text
    assert "settings --batch-size 8 --max-steps 6 (every setting" in " ".join(done.stdout.split())
    assert "open_timeout_s" not in done.stdout  # every setting is for --verbose
    verbose = subprocess.run(
        [sys.executable, "-m", "framescope", "run", "--model-name", "mobilenet_v3_small", "--input_path",
         "sample:", "--max-steps", "2", "--output-dir", "runs", "--verbose"],
        capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert verbose.returncode == 0, verbose.stderr
    assert "open_timeout_s=10.0" in verbose.stdout and "timing" in verbose.stdout
    assert max(len(line) for line in verbose.stdout.splitlines()) <= 100


def test_a_bare_run_shows_a_short_usage_with_three_examples() -> None:
    result = run_cli("run")
    assert result.code == 2
    assert result.err.startswith("framescope run: error: nothing to run: pass --model-name and --input_path")
    assert "usage: framescope run --model-name MODEL --input_path SOURCE" in result.err
    assert result.err.count("  # ") == 3
    assert "--input_path rtsp://" in result.err and "--core-bind 4-7 --infer-on-gpu" in result.err
    assert max(len(line) for line in result.err.splitlines()) <= 100


def test_a_misspelt_flag_names_the_flag_meant_and_shows_the_examples() -> None:
    result = run_cli("run", "--model-name", "resnet18", "--input_path", "sample:", "--bach-size", "8")
    assert result.code == 2
    first = result.err.splitlines()[0]
    assert first == "framescope run: error: unrecognized arguments: --bach-size 8; did you mean --batch-size?"
    assert result.err.count("  # ") == 3
    other = run_cli(
        "sweep", "--model-name", "resnet18", "--input_path", "x", "--batch-size", "1,2", "--roundz", "2"
    )
    assert other.code == 2 and other.err.strip().endswith(
        "did you mean --rounds?; see framescope sweep --help."
    )


# --- framescope doctor -----------------------------------------------------------------------------------


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name: check for check in checks}


def test_doctor_on_this_machine(tmp_path: Path) -> None:
    from framescope.sources._torchcodec import torchcodec_problem

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "framescope", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["healthy"] and report["seconds"] <= seconds
    for name in ("python", "torch + torchvision", "PyAV", "OpenCV video", "cores", "memory"):
        assert checks[name]["verdict"] == "ok" and checks[name]["needed"], checks[name]
    assert "torchvision.ops.nms runs" in checks["torch + torchvision"]["detail"]
    assert checks["torchcodec"]["verdict"] == ("ok" if torchcodec_problem() is None else "missing")
    cuda = torch.cuda.is_available()
    assert checks["CUDA"]["verdict"] == ("ok" if cuda else "missing")
    for codec in doctor.CODECS:
        nvdec = [c for name, c in checks.items() if name.startswith(f"NVDEC {codec}")]
        assert nvdec and (cuda or all(c["verdict"] == "missing" for c in nvdec))
    assert {"Ray", "ONNX Runtime", "nsys", "NVTX", "load now"} <= checks.keys()


def test_doctor_prints_one_table_that_fits() -> None:
    result = run_cli("doctor")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "framescope doctor" in lines[0] and "ready: the default run will work here" in result.out


@pytest.mark.parametrize(
    ("module", "label", "extra"), [("ray", "Ray", "ray"), ("onnxruntime", "ONNX Runtime", "onnx")]
)
def test_optional_packages_present_and_absent(
    monkeypatch: pytest.MonkeyPatch, module: str, label: str, extra: str
) -> None:
    present = doctor.check_optional(module, label, "a feature", extra)
    assert present.verdict == "ok" and not present.needed  # installed with the dev extras
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import blocked
    absent = doctor.check_optional(module, label, "a feature", extra)
    assert absent.verdict == "missing" and absent.detail == "not installed"
    assert f"pip install 'framescope[{extra}]'" in absent.fix


def test_nsys_present_and_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    absent = doctor.check_nsys()
    assert absent.verdict == "missing" and "not on PATH" in absent.detail
    fake = tmp_path / "nsys"
    fake.write_text("#!/bin/sh\necho 'NVIDIA Nsight Systems version 2025.3.1.90-253135822126v0'\n")
    fake.chmod(0o755)
    present = doctor.check_nsys()
    assert present.verdict == "ok" and present.detail.startswith(f"2025.3.1.90 at {fake}")
    fake.write_text("#!/bin/sh\nexit 3\n")
    assert doctor.check_nsys().verdict == "fail"


def test_a_broken_torchvision_fails_the_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)
    result = run_cli("doctor")
    assert result.code == 1
    assert "not ready: torch + torchvision must work for a run" in " ".join(result.out.split())


def test_the_load_check_sees_a_busy_process() -> None:
    assert doctor.check_load(1.0, sample=lambda s: 0.1).verdict == "ok"
    assert doctor.check_load(1.0, sample=lambda s: 1.4).verdict == "warn"
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 8\nwhile time.time() < end: pass"]
    )
    try:
        time.sleep(0.5)
        found = doctor.check_load(2.0)
    finally:
        busy.kill()
        busy.wait()
    assert found.verdict == "warn", found  # one process spinning: about one core busy
    used = float(found.detail.split("used ")[1].split(" of")[0])
    assert 0.7 <= used <= 2.0, found.detail


def test_torchcodec_present_and_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from framescope.sources._torchcodec import torchcodec_problem

    present = doctor.check_torchcodec()
    assert present.verdict == ("ok" if torchcodec_problem() is None else "missing") and not present.needed
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    absent = doctor.check_torchcodec()
    assert absent.verdict == "missing" and absent.detail == "not installed" and "--decoder pyav" in absent.fix


@pytest.mark.gpu
def test_doctor_sees_the_gpu_and_nvdec(tmp_path: Path) -> None:
    checks = by_name(doctor.run_checks(load_seconds=0.2))
    assert checks["CUDA"].verdict == "ok" and checks["GPU 0"].verdict == "ok"
    assert "compute capability" in checks["GPU 0"].detail and checks["cuDNN"].verdict == "ok"
    h264 = [c for name, c in checks.items() if name.startswith("NVDEC h264")]
    assert len(h264) == 2 and any(c.verdict == "ok" for c in h264), h264  # NVDEC decodes H.264 everywhere
