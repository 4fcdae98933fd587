"""``--malloc``: glibc's malloc mapping large buffers afresh every step, measured (the kernel's share of the
process's CPU time, page faults a step), diagnosed, and fixed by ``--malloc retain``.

Whether glibc maps a step's buffers afresh depends on its adaptive threshold, so an ordinary process may or
may not show it; ``MALLOC_MMAP_THRESHOLD_=131072`` fixes the threshold at its starting value and provokes it
for real in every process. ``apply_malloc`` changes the whole process for good, so it runs in subprocesses
here, never in the test process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framescope.diagnose._rules import FAULTS_PER_STEP_WARN, KERNEL_SHARE_WARN, allocator_page_faults
from framescope.instrument.cpu_load import CpuLoadMeter
from framescope.records import RunResult

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="--malloc retain tunes glibc"
)
FAULTY = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc's starting threshold, fixed: every buffer over 128 KiB is mapped afresh and unmapped when freed."""


def _run(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "framescope", "run", "--model-name", "resnet18", "--input_path",
         "synthetic:224x224", "--batch-size", "8", "--max-steps", "24", "--output-dir", str(out),
         "--progress", "none", *flags],
        capture_output=True, text=True, check=False, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (summary,) = out.glob("*/summary.json")
    data: dict[str, Any] = json.loads(summary.read_text())
    data["_stdout"] = done.stdout
    summary.parent.rename(tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}")
    return data


@glibc_only
def test_page_faults_from_the_allocator_are_measured_diagnosed_and_gone_with_retain(tmp_path: Path) -> None:
    faulty = _run(tmp_path, env=FAULTY)
    cpu = faulty["cpu"]
    # resnet18's first activation alone is 8 x 64 x 112 x 112 floats (25.7 MB, 6,272 pages) a step
    assert cpu["minor_faults"] / faulty["steps"] > 6000
    assert cpu["kernel_share"] >= KERNEL_SHARE_WARN
    assert faulty["malloc"] == {
        "setting": "default", "in_effect": "default", "allocator": "glibc", "environment": FAULTY,
    }  # fmt: skip
    found = {f["id"]: f for f in faulty["findings"]}["allocator_page_faults"]
    assert found["severity"] == "warning" and found["overrides"] == {"malloc": "retain"}
    assert found["evidence"]["faults_per_step"] == pytest.approx(cpu["minor_faults"] / faulty["steps"])
    assert "-> try: --malloc retain" in " ".join(faulty["_stdout"].split())

    retained = _run(tmp_path, "--malloc", "retain", env=FAULTY)  # mmap off: the threshold no longer matters
    assert retained["malloc"]["in_effect"] == "retain"
    assert retained["cpu"]["minor_faults"] / retained["steps"] < FAULTS_PER_STEP_WARN
    assert retained["cpu"]["kernel_share"] < KERNEL_SHARE_WARN
    assert "allocator_page_faults" not in {f["id"] for f in retained["findings"]}


@glibc_only
def test_retain_lasts_for_the_process_and_a_later_default_run_says_so() -> None:
    script = (
        "import json\n"
        "from framescope._malloc import apply_malloc\n"
        "print(json.dumps([apply_malloc('default'), apply_malloc('retain'), apply_malloc('default')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    first, retain, after = json.loads(done.stdout)
    assert first["in_effect"] == "default" and "note" not in first
    assert retain["in_effect"] == "retain" and "note" not in retain
    assert after["setting"] == "default" and after["in_effect"] == "retain"
    assert "cannot go back" in after["note"]


def test_a_bad_malloc_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "framescope", "run", "--model-name", "resnet18", "--input_path",
         "synthetic:224x224", "--malloc", "jemalloc", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--malloc" in done.stderr and "retain" in done.stderr
    assert not list(tmp_path.iterdir())


def test_a_bad_malloc_setting_from_python_or_a_config_file_is_a_config_error() -> None:
    """Not only the command line's choices: RunConfig itself refuses it (YAML and framescope.run too)."""
    from framescope import RunConfig
    from framescope.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"^malloc = 'jemalloc' is not one of default, retain; pass e\.g\. --malloc"
    ):
        RunConfig.from_flat(model_name="resnet18", input_path="x.mp4", malloc="jemalloc")


def test_the_cpu_meter_reports_the_kernel_share_and_page_faults_of_its_window() -> None:
    now = [0.0]
    usage = iter([(1.0, 0.5, 100), (4.0, 1.5, 5100)])  # user s, system s, minor faults: at start, at read
    meter = CpuLoadMeter(
        [0], clock=lambda: now[0], counters=lambda: (0.0, 0.0, 0.0), usage=lambda: next(usage)
    )
    now[0] = 2.0
    load = meter.read()
    assert load.kernel_share == pytest.approx(1.0 / 4.0) and load.minor_faults == 5000
    assert load.as_dict()["kernel_share"] == pytest.approx(0.25)


def _summary(
    kernel: float | None, faults: int | None, steps: int = 10, in_effect: str = "default"
) -> RunResult:
    summary = {
        "steps": steps,
        "cpu": {"kernel_share": kernel, "minor_faults": faults},
        "malloc": {"setting": in_effect, "in_effect": in_effect},
    }
    return RunResult(run_dir=Path("."), config={}, system={}, rows=None, summary=summary, csv_path=Path("x"))  # type: ignore[arg-type]


def test_the_rule_needs_both_the_kernel_time_and_the_faults_and_a_default_allocator() -> None:
    assert allocator_page_faults(_summary(0.2, 20_000)) is not None
    assert allocator_page_faults(_summary(0.05, 20_000)) is None  # faults, but cheap ones
    assert allocator_page_faults(_summary(0.3, 500)) is None  # kernel time, not the allocator's
    assert allocator_page_faults(_summary(0.3, 20_000, in_effect="retain")) is None  # faults are elsewhere
    assert allocator_page_faults(_summary(None, None)) is None  # a run too short to measure
    found = allocator_page_faults(_summary(0.25, 25_000, steps=5))
    assert found is not None and found.evidence["faults_per_step"] == 5000
    assert "25% of this process's CPU time" in found.message and "5,000 page faults a step" in found.message
