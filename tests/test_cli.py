"""The command line as a user meets it: flags, messages, exit codes, files."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from tests.conftest import CLIP_FRAMES, run_cli

from framescope import load_run
from framescope.cli import build_parser
from framescope.cli._flags import config_from_flags, shown_default
from framescope.config import SEED_WORKER, AnnotateConfig, ExtractConfig, RunConfig, flat_settings
from framescope.records import SEED_COLUMNS

SEED_FLAGS = [
    "--model-name",
    "--input_path",
    "--input-path",
    "--mode",
    "--batch-size",
    "--prep-level",
    "--prep-on-gpu",
    "--infer-on-gpu",
    "--core-bind",
    "--enable-compile",
    "--use-amp",
    "--max-steps",
]
MORE_FLAGS = [
    "--output-dir",
    "--weights",
    "--warmup-steps",
    "--decoder",
    "--torch-profile",
    "--config",
    "--run-name",
    "--open-timeout",
    "--read-timeout",
]


def run_args(out_dir: Path, *args: str) -> list[str]:
    return [
        "run",
        "--model-name",
        "mobilenet_v3_small",
        "--output-dir",
        str(out_dir),
        "--progress",
        "log",
        *args,
    ]


def one_line_error(result_err: str) -> str:
    lines = result_err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result_err!r}"
    assert "Traceback" not in result_err
    return lines[0]


def test_help_documents_every_flag_with_its_default() -> None:
    result = run_cli("run", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for flag in SEED_FLAGS + MORE_FLAGS:
        assert flag in text, flag
    assert text.count("(default:") >= len(RunConfig.FLAT_FIELDS) - 1
    for fragment in (
        "frames per batch (default: 1)",
        "(default: medium)",
        "video decoder (default: opencv)",
        "(default: none)",
        "(default: until the input ends)",
        "leading steps kept out of the summary (default: 2)",
    ):
        assert fragment in text, fragment


COMMAND_CONFIGS = [("run", RunConfig), ("extract-frames", ExtractConfig), ("annotate", AnnotateConfig)]


def command_parser(command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


@pytest.mark.parametrize(("command", "kind"), COMMAND_CONFIGS)
def test_parsers_expose_exactly_the_fields_flags(command: str, kind: type) -> None:
    parser = command_parser(command)
    after_the_run = (
        "tune",
        "tune_rounds",
        "report",
        "verbose",
    )  # what the command does afterwards (or prints), not the run's settings
    actions = [
        a for a in parser._actions if a.option_strings and a.dest not in ("help", "config", *after_the_run)
    ]
    declared = [s for s in flat_settings(kind) if s.spec.flag is not None]
    assert {tuple(a.option_strings): a.dest for a in actions} == {s.spec.options: s.name for s in declared}
    if command == "run":
        yaml_only = {"models"}  # each model's own section; --model-name a,b names them on the command line
        assert RunConfig.FLAT_FIELDS.keys() - yaml_only == {s.name for s in declared}


@pytest.mark.parametrize(("command", "kind"), COMMAND_CONFIGS)
def test_help_shows_each_fields_help_choices_and_default(command: str, kind: type) -> None:
    result = run_cli(command, "--help")
    assert result.code == 0
    text = "".join(result.out.split())  # argparse wraps lines anywhere, hyphens included

    def shown(fragment: str) -> bool:
        return "".join(fragment.split()) in text

    for setting in flat_settings(kind):
        if setting.spec.flag is None:
            continue
        if setting.choices is not None:
            assert shown(f"{setting.spec.options[0]} {{{','.join(setting.choices)}}}"), setting.name
        if setting.spec.metavar is not None:
            assert shown(f"{setting.spec.options[0]} {setting.spec.metavar}"), setting.name
        if setting.required and command != "run":
            assert shown(setting.spec.help), setting.name
            continue
        assert shown(f"{setting.spec.help} (default: {shown_default(setting)})"), setting.name
        value = setting.default
        if not (setting.required or setting.spec.default_text or value is None or isinstance(value, bool)):
            assert shown(f"(default: {value})"), setting.name  # the field's own value


def test_run_help_groups_the_seed_workers_flags() -> None:
    parser = command_parser("run")
    titles = [g.title for g in parser._action_groups]
    assert titles[-3:] == [SEED_WORKER, "more", "after the run"]
    seed_group = next(g for g in parser._action_groups if g.title == SEED_WORKER)
    assert {o for a in seed_group._group_actions for o in a.option_strings} == {*SEED_FLAGS, "--split-point"}


def test_extract_and_annotate_flags_build_their_configs_with_the_fields_defaults() -> None:
    parse = command_parser("extract-frames").parse_args
    assert config_from_flags(ExtractConfig, parse(["-i", "v.mp4", "-o", "out"])) == ExtractConfig(
        input="v.mp4", output="out"
    )
    args = parse(
        ["--input", "v.mp4", "--output", "o", "--start", "5", "--end", "9", "--open-timeout", "3",
         "--format", "jpg", "--quality", "80", "--fps", "0.5", "--prefix", "p_", "--read-timeout", "4"]
    )  # fmt: skip
    assert config_from_flags(ExtractConfig, args) == ExtractConfig(
        input="v.mp4", output="o", start_s=5.0, end_s=9.0, open_timeout_s=3.0, format="jpg", quality=80,
        fps=0.5, prefix="p_", read_timeout_s=4.0,
    )  # fmt: skip
    parse = command_parser("annotate").parse_args
    assert config_from_flags(AnnotateConfig, parse(["-i", "imgs", "-o", "out"])) == AnnotateConfig(
        input="imgs", output="out"
    )
    args = parse(
        ["-i", "imgs", "-o", "out", "--model-name", "ssd300_vgg16", "--threshold", "0.5",
         "--batch-size", "2", "--device", "cpu", "--weights", "none"]
    )  # fmt: skip
    assert config_from_flags(AnnotateConfig, args) == AnnotateConfig(
        input="imgs", output="out", model_name="ssd300_vgg16", threshold=0.5, batch_size=2, device="cpu",
        weights="none",
    )  # fmt: skip


def test_seed_command_line(clip: Path, out_dir: Path) -> None:
    """The seed README's example, minus the GPU flags this machine cannot honour."""
    result = run_cli(
        "run",
        "--model-name",
        "resnet18",
        "--input_path",
        str(clip),
        "--batch-size",
        "16",
        "--prep-level",
        "medium",
        "--core-bind",
        "all",
        "--use-amp",
        "--max-steps",
        "2",
        "--output-dir",
        str(out_dir),
        "--progress",
        "log",
    )
    assert result.code == 0, result.err
    csv = next(out_dir.glob("*/M_resnet18_P_*_metrics.csv"))
    rows = pd.read_csv(csv)
    assert list(rows.columns[:6]) == list(SEED_COLUMNS)  # the literal seed schema is pinned in test_records
    assert len(rows) == 2 and list(rows["frames"]) == [16, 16]


def test_output_shows_system_config_progress_and_summary(clip: Path, out_dir: Path) -> None:
    result = run_cli(*run_args(out_dir, "--input-path", str(clip), "--batch-size", "4"))
    assert result.code == 0, result.err
    out = result.out
    for fragment in (
        "machine",
        "cores",
        "torch",
        "GPU",
        "model",
        "mobilenet_v3_small",
        "settings",
        "host-wall",
    ):
        assert fragment in out, fragment
    assert "step 0:" in out  # plain progress lines when not on a terminal
    for fragment in ("run complete", "mean", "p50", "p95", "p99", "read", "prep", "exec", "step total"):
        assert fragment in out, fragment
    assert f"{CLIP_FRAMES} frames in 9 steps" in out
    assert "FPS" in out and "run directory:" in out


def test_config_file_with_flag_overrides(clip: Path, out_dir: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    base = RunConfig.from_flat(
        model_name="mobilenet_v3_small", input_path=str(clip), batch_size=2, max_steps=5
    )
    config_file.write_text(base.to_yaml())
    result = run_cli("run", "--config", str(config_file), "--max-steps", "3", "--output-dir", str(out_dir))
    assert result.code == 0, result.err
    run = load_run(next(out_dir.iterdir()))
    assert len(run.rows) == 3 and run.config["batch_size"] == 2


def test_models_command_lists_names() -> None:
    result = run_cli("models", "--task", "detection")
    assert result.code == 0
    names = result.out.split()
    assert "ssd300_vgg16" in names and "resnet50" not in names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input_path", "{missing}"], r"input '.*missing.mp4' does not exist; check the path"),
        (["--input_path", "{empty}"], r"is empty \(0 bytes\)"),
        (["--input_path", "{corrupt}"], r"is not a readable video"),
        (["--input_path", "{corrupt}", "--decoder", "pyav"], r"is not a readable video"),
        (
            ["--input_path", "{clip}", "--model-name", "resnet5"],
            r"unknown model 'resnet5'; did you mean resnet50",
        ),
        (["--input_path", "{clip}", "--core-bind", "0-x"], r"--core-bind '0-x' is not a core list"),
        (["--input_path", "{clip}", "--core-bind", "900-901"], r"core\(s\) 900-901, which do not exist"),
        (["--input_path", "{clip}", "--batch-size", "0"], r"batch_size = 0 should be a positive integer"),
        (["--input_path", "{clip}", "--batch-size", "-2"], r"batch_size = -2 should be a positive integer"),
        (["--input_path", "{clip}", "--max-steps", "0"], r"max_steps = 0 should be a positive integer"),
        (
            ["--input_path", "{clip}", "--batch-size", "two"],
            r"argument --batch-size: invalid int value: 'two'",
        ),
        (["--input_path", "{clip}", "--prep-level", "max"], r"argument --prep-level: invalid choice"),
        (["--input_path", "{clip}", "--output-dir", "{a_file}/sub"], r"cannot create --output-dir"),
        (["--input_path", "{clip}", "--output-dir", "{a_file}"], r"exists and is not a directory"),
        (["--input_path", "{clip}", "--weights", "{missing}"], r"weights file .* does not exist"),
        (["--input_path", "7"], r"camera 7 could not be opened"),
        (["--input_path", "synthetic:axb"], r"is not a synthetic source"),
        (["--input_path", "{clip}", "--mode", "retrain", "--model-name", "r3d_18"], r"video, optical-flow"),
        (["--model-name", "resnet18"], r"--input_path is required"),
    ],
)
def test_bad_input_gets_one_line_and_exit_code_2(
    args: list[str], message: str, clip: Path, empty_video: Path, corrupt_video: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    values = {
        "missing": str(tmp_path / "missing.mp4"),
        "empty": str(empty_video),
        "corrupt": str(corrupt_video),
        "clip": str(clip),
        "a_file": str(a_file),
    }
    argv = ["run", "--output-dir", str(tmp_path / "runs"), *(a.format(**values) for a in args)]
    if "--model-name" not in args:
        argv += ["--model-name", "mobilenet_v3_small"]
    result = run_cli(*argv)
    assert result.code == 2
    line = one_line_error(result.err)
    assert line.startswith("framescope"), line
    import re

    assert re.search(message, line), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("flag", ["--infer-on-gpu", "--prep-on-gpu"])
def test_gpu_flags_without_cuda(flag: str, clip: Path, out_dir: Path) -> None:
    result = run_cli(*run_args(out_dir, "--input_path", str(clip), flag))
    assert result.code == 2
    assert one_line_error(result.err) == (
        f"framescope: error: {flag} needs a CUDA GPU, but no CUDA device is visible (check nvidia-smi and "
        f"CUDA_VISIBLE_DEVICES); drop {flag} to run on the CPU."
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_stream_that_cannot_be_opened_in_time(silent_port: int, out_dir: Path, decoder: str) -> None:
    started = time.monotonic()
    result = run_cli(
        *run_args(
            out_dir,
            "--input_path",
            f"rtsp://127.0.0.1:{silent_port}/cam",
            "--open-timeout",
            "1",
            "--read-timeout",
            "1",
            "--decoder",
            decoder,
        )
    )
    assert result.code == 2
    assert "could not be opened" in one_line_error(result.err)
    assert time.monotonic() - started < 10


# --- real processes ---------------------------------------------------------------------------------------


def framescope_cmd() -> list[str]:
    return [sys.executable, "-m", "framescope"]


@pytest.mark.slow
def test_console_script_and_module_entry_points(out_dir: Path) -> None:
    script = Path(sys.executable).with_name("framescope")
    for cmd in ([str(script)], framescope_cmd()):
        done = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and done.stdout.startswith("framescope ")
    bad = subprocess.run(
        [*framescope_cmd(), "run", "--model-name", "nope_net", "--input_path", "synthetic:8x8"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("framescope: error: unknown model 'nope_net'")
    assert len(bad.stderr.strip().splitlines()) == 1


def without_file_override() -> list[str]:
    """As root, permission bits do not stop reads; drop the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_without_file_override(input_path: Path, output_dir: Path) -> subprocess.CompletedProcess[str]:
    """``framescope run`` in a process for which permission bits apply, even when the tests run as root."""
    return subprocess.run(
        [
            *without_file_override(),
            *framescope_cmd(),
            "run",
            "--model-name",
            "resnet18",
            "--input_path",
            str(input_path),
            "--output-dir",
            str(output_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_unreadable_video(clip: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    shutil.copy(clip, locked)
    locked.chmod(0)
    done = run_without_file_override(locked, tmp_path / "runs")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"framescope: error: cannot read '{locked}': permission denied; fix its permissions (e.g. chmod a+r)."
    )


@pytest.mark.slow
def test_unwritable_output_directory(clip: Path, tmp_path: Path) -> None:
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o555)
    done = run_without_file_override(clip, locked / "runs")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(
        f"framescope: error: cannot create --output-dir '{locked / 'runs'}'"
    )
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_kill_9_keeps_every_finished_batch(tmp_path: Path) -> None:
    out_dir = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            *framescope_cmd(),
            "run",
            "--model-name",
            "mobilenet_v3_small",
            "--input_path",
            "synthetic:64x64",
            "--batch-size",
            "2",
            "--output-dir",
            str(out_dir),
            "--run-name",
            "killed",
            "--progress",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_dir = out_dir / "killed"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            csvs = list(run_dir.glob("M_*_metrics.csv"))
            if csvs and len(csvs[0].read_text().splitlines()) > 10:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the run wrote no rows within 120 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    text = csvs[0].read_text()
    data_lines = text.splitlines()[1:]
    assert len(data_lines) >= 10
    run = load_run(run_dir)
    # every line that was finished before the kill is a full row; at most a partial last line is dropped
    assert len(run.rows) >= len(data_lines) - 1
    assert list(run.rows["step"]) == list(range(len(run.rows)))
    assert run.rows["total_step_latency_ms"].notna().all()
    assert run.status == "incomplete" and run.summary["steps"] == len(run.rows)
    assert (run_dir / "config.yaml").exists() and (run_dir / "system.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "why"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_stopping_a_run_keeps_and_prints_its_summary(
    tmp_path: Path, signum: int, code: int, why: str
) -> None:
    out_dir = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            *framescope_cmd(),
            "run",
            "--model-name",
            "mobilenet_v3_small",
            "--input_path",
            "synthetic:64x64",
            "--output-dir",
            str(out_dir),
            "--run-name",
            "stopped",
            "--progress",
            "log",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv = out_dir / "stopped" / f"M_mobilenet_v3_small_P_{proc.pid}_metrics.csv"
    deadline = time.monotonic() + 120
    while not (csv.exists() and len(csv.read_text().splitlines()) > 5):
        assert time.monotonic() < deadline and proc.poll() is None, "the run wrote no rows"
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "run interrupted" in out and "step total" in out
    run = load_run(out_dir / "stopped")
    assert run.status == "interrupted" and why in run.summary["error"]
    assert run.summary["steps"] == len(run.rows) >= 5


def test_remaining_flags_are_honoured(clip: Path, out_dir: Path) -> None:
    result = run_cli(
        "run",
        "--model-name",
        "mobilenet_v3_small",
        "--input-path",
        str(clip),
        "--output-dir",
        str(out_dir),
        "--run-name",
        "flags",
        "--mode",
        "retrain",
        "--num-classes",
        "3",
        "--lr",
        "0.1",
        "--seed",
        "9",
        "--decoder",
        "pyav",
        "--decode-threads",
        "1",
        "--torch-threads",
        "1",
        "--warmup-steps",
        "0",
        "--batch-size",
        "6",
        "--progress",
        "bar",
    )
    assert result.code == 0, result.err
    run = load_run(out_dir / "flags")
    settings = run.config
    assert settings["model"]["num_classes"] == 3 and settings["model"]["learning_rate"] == 0.1
    assert settings["seed"] == 9 and settings["source"]["decode_threads"] == 1
    assert (run.summary["threads"]["torch"], run.summary["threads"]["decode"]) == (1, 1)
    assert run.summary["excluded_steps"]["warmup"] == 0
    assert len(run.rows) == CLIP_FRAMES // 6 and (run.rows["loss"] > 0).all()
