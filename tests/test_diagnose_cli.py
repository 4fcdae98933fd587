"""`framescope diagnose`, the findings a run prints at its end, and `run --tune`: what a user sees and what
scripts read (summary.json's findings, tune.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_cli

from framescope.records import load_run


def hd_run(clip_1080p: Path, out_dir: Path, *extra: str) -> tuple[str, Path]:
    """The issue's first case through the command line: mobilenet, 1080p, sync, OpenCV, batch 8."""
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", str(clip_1080p), "--batch-size", "8",
        "--pipeline", "sync", "--decoder", "opencv", "--output-dir", str(out_dir), "--progress", "log",
        *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return result.out, run_dir


@pytest.fixture(scope="module")
def hd_run_dir(clip_1080p: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return hd_run(clip_1080p, tmp_path_factory.mktemp("hd-runs"))


def test_a_run_ends_with_its_top_findings_and_their_fixes(hd_run_dir: tuple[str, Path]) -> None:
    out, run_dir = hd_run_dir
    shown = out[out.index("\nfindings\n") :]
    assert "[input_bound]" in shown and "[decode_full_size]" in shown, shown
    assert "-> try: --decoder pyav --decode-size auto" in " ".join(shown.split())  # however it wraps
    assert f"framescope diagnose {run_dir}" in " ".join(shown.split())  # where the rest (the evidence) are


def test_diagnose_prints_every_finding_with_its_evidence(hd_run_dir: tuple[str, Path]) -> None:
    _, run_dir = hd_run_dir
    result = run_cli("diagnose", str(run_dir))
    assert result.code == 0, result.err
    summary = json.loads((run_dir / "summary.json").read_text())
    for finding in summary["findings"]:
        assert f"{finding['severity']} {finding['id']}\n  {finding['message']}\n" in result.out
    assert "  fix: --decoder pyav --decode-size auto\n" in result.out
    assert "  evidence: frame_pixels 2073600, kept_pixels 65536," in result.out


def test_diagnose_json_is_what_summary_json_holds(hd_run_dir: tuple[str, Path]) -> None:
    _, run_dir = hd_run_dir
    result = run_cli("diagnose", str(run_dir), "--json")
    assert result.code == 0, result.err
    printed = json.loads(result.out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert printed["findings"] == summary["findings"]  # the rules read the directory back the same
    for finding in printed["findings"]:
        assert set(finding) == {"id", "severity", "message", "evidence", "overrides"}
        assert finding["severity"] in ("info", "warning", "critical")


def test_diagnose_bad_input_is_one_line_and_exit_2(tmp_path: Path, hd_run_dir: tuple[str, Path]) -> None:
    missing = run_cli("diagnose", str(tmp_path / "nope"))
    assert missing.code == 2 and missing.err.count("\n") == 1 and "does not exist" in missing.err
    not_a_run = run_cli("diagnose", str(tmp_path))
    assert not_a_run.code == 2 and "is it a framescope run directory?" in not_a_run.err
    _, run_dir = hd_run_dir
    few = run_cli("diagnose", str(run_dir), "--measure", "--rounds", "2")
    assert few.code == 2 and "--rounds 2 is too few" in few.err and "Traceback" not in few.err
    assert not (run_dir / "tune").exists()  # refused before anything ran


def test_run_tune_with_too_few_rounds_is_refused_before_the_run(clip: Path, out_dir: Path) -> None:
    result = run_cli("run", "--model-name", "resnet18", "--input_path", str(clip), "--tune",
                     "--tune-rounds", "1", "--output-dir", str(out_dir))  # fmt: skip
    assert result.code == 2 and "--tune-rounds 1 is too few" in result.err
    assert not out_dir.exists()


@pytest.mark.slow
def test_run_tune_measures_the_fixes_and_prints_a_faster_command(clip_1080p: Path, out_dir: Path) -> None:
    """`run --tune --report` on the issue's first case: each fix measured against the original in
    interleaved rounds, under the run directory; tune.json has the interface other tools read; the report
    shows the measurements."""
    out, run_dir = hd_run(clip_1080p, out_dir, "--tune", "--report")
    tune = json.loads((run_dir / "tune.json").read_text())
    assert set(tune) >= {"original_command", "command", "overrides", "speedup", "trials"}
    assert tune["original_command"].startswith("framescope run --model-name mobilenet_v3_small")
    tried = {trial["finding"]: trial for trial in tune["trials"]}
    decode = tried["decode_full_size+input_bound"]
    assert decode["overrides"] == {"decoder": "pyav", "decode_size": "auto"}
    assert len(decode["baseline_fps"]) == len(decode["candidate_fps"]) >= 3
    assert decode["verdict"] in ("faster", "slower", "no measurable change")
    for trial in tune["trials"]:
        for path in trial["run_dirs"]:
            assert Path(path).is_relative_to(run_dir / "tune")
            assert load_run(Path(path)).summary["status"] == "complete"  # ordinary run directories
    # The measured speedup of a trial agrees with the rates its run directories recorded.
    rates = [load_run(Path(p)).summary["steady_fps"] for p in decode["run_dirs"]]
    assert sorted(rates) == pytest.approx(sorted(decode["candidate_fps"]))
    assert "measured changes (at least 3 interleaved rounds each)" in out
    report = (run_dir / "report.html").read_text()  # --report: written after --tune, so it shows it
    assert "Measured what-if (tune.json)" in report and "decode_full_size+input_bound" in report
    assert f"report: {run_dir / 'report.html'}" in out
    if tune["speedup"] is not None:
        assert tune["speedup"]["low"] > 1.0
        assert f"  {tune['command']}\n" in out
        assert tune["command"] != tune["original_command"]
    else:
        assert "no change was measured to help" in out
