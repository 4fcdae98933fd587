"""framescope compare: the statistics on constructed runs (exact rates, drift, too few steps), real run
directories through the command line (the gate's exit codes, Markdown, JSON, bad input), and --rerun
measuring both again in interleaved rounds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import run_cli

import framescope
from framescope import RunConfig
from framescope.compare import (
    compare_groups,
    compare_rounds,
    compare_runs,
    config_of,
    overrides_between,
    rerun,
)
from framescope.records import COLUMNS, RunResult
from framescope.stats import block_bootstrap_ratio, block_indices, median_of, rate_of, segment_drift

SMALL = "mobilenet_v3_small"


# --- the statistics -----------------------------------------------------------------------------------


def test_block_indices_are_runs_of_consecutive_steps() -> None:
    rng = np.random.default_rng(0)
    index = block_indices(27, resamples=50, rng=rng, block=3)
    assert index.shape == (50, 27)
    steps = np.diff(index.reshape(50, 9, 3), axis=2)  # within each block of three
    assert np.all((steps == 1) | (steps == -26))  # consecutive, wrapping around the end


def test_a_block_bootstrap_recovers_a_known_ratio() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(100, 5, 200)
    cand = rng.normal(80, 5, 200)
    ratio = block_bootstrap_ratio([base], [cand], median_of)
    assert ratio.value == pytest.approx(np.median(cand) / np.median(base))
    assert ratio.low < 0.8 < ratio.high
    assert ratio.high - ratio.low < 0.05


def test_segment_drift_sees_a_run_that_slows_down_and_not_a_steady_one() -> None:
    rng = np.random.default_rng(2)
    steady = rng.normal(50, 1, 80)
    drifting = np.linspace(50, 70, 80)
    assert segment_drift([steady], median_of) < 0.02
    assert segment_drift([drifting], median_of) == pytest.approx(67.5 / 60 - 1, abs=0.01)
    assert segment_drift([steady[:8]], median_of) == math.inf  # too few steps to cut in quarters
    frames = np.full(80, 8.0)
    assert segment_drift([frames, drifting], rate_of) > 0.10


# --- constructed runs ---------------------------------------------------------------------------------


def fake_run(
    name: str,
    step_ms: np.ndarray,
    *,
    exec_share: float = 0.6,
    system: dict[str, Any] | None = None,
    **flat: Any,
) -> RunResult:
    steps = len(step_ms)
    rows = pd.DataFrame({column: np.nan for column in COLUMNS}, index=range(steps))
    rows["step"] = range(steps)
    rows["frames"] = 8
    rows["warmup"] = False
    rows["profiled"] = False
    rows["total_step_latency_ms"] = step_ms
    rows["exec_latency_ms"] = step_ms * exec_share
    rows["read_latency_ms"] = step_ms * (1 - exec_share)
    config = RunConfig.from_flat(model_name=SMALL, input_path="clip.mp4", **flat).to_dict()
    stages = {c: {"mean_ms": 1.0} for c in ("read_latency_ms", "exec_latency_ms", "total_step_latency_ms")}
    summary = {"status": "complete", "stages": stages, "cpu": {"cores": 2, "others": 0.0, "steal": 0.0}}
    system = (
        system if system is not None else {"cpu_model": "AMD EPYC", "torch": "2.15.0", "logical_cores": 2}
    )
    return RunResult(Path(name), config, system, rows, summary)


def noisy(rng: np.random.Generator, centre: float, steps: int = 60) -> np.ndarray:
    return rng.normal(centre, centre * 0.04, steps)


def test_one_job_twice_is_no_measurable_change() -> None:
    rng = np.random.default_rng(3)
    comparison = compare_runs(fake_run("a", noisy(rng, 50)), fake_run("b", noisy(rng, 50)))
    assert comparison.comparable and not comparison.changed
    assert [w[:36] for w in comparison.warnings] == ["one run on each side: the intervals "]
    verdicts = {line.metric: line.verdict for line in comparison.lines}
    assert verdicts == {
        "throughput": "no measurable change",
        "read_latency_ms": "no measurable change",
        "exec_latency_ms": "no measurable change",
    }


def test_a_slower_candidate_is_slower_with_an_interval_around_its_change() -> None:
    rng = np.random.default_rng(4)
    comparison = compare_runs(fake_run("a", noisy(rng, 50)), fake_run("b", noisy(rng, 65), torch_threads=1))
    line = comparison.line("throughput")
    assert line is not None and line.ratio is not None
    assert line.verdict == "slower"
    assert line.change_pct == pytest.approx((50 / 65 - 1) * 100, abs=3)
    assert line.ratio.low < 50 / 65 < line.ratio.high
    assert line.slower_by_more_than(7) and not line.slower_by_more_than(40)
    exec_line = comparison.line("exec_latency_ms")
    assert exec_line is not None and exec_line.verdict == "slower"  # a stage: more time is slower
    assert comparison.changed == ["torch_threads: default -> 1"]
    assert comparison.comparable  # another flag is what a comparison is for
    assert [r.metric for r in comparison.regressions(7, ["throughput"])] == ["throughput"]


def test_a_change_within_a_runs_own_drift_is_not_called() -> None:
    """The baseline slows by a third over its run: a 6 % change between the two is within that drift,
    however narrow the per-step interval."""
    rng = np.random.default_rng(5)
    drifting = np.linspace(42, 58, 60) + rng.normal(0, 0.5, 60)
    comparison = compare_runs(fake_run("a", drifting), fake_run("b", noisy(rng, 53)))
    line = comparison.line("throughput")
    assert line is not None and line.noise > 0.06
    assert line.verdict == "no measurable change"
    assert any(w.startswith("baseline is unstable: its quarters' rates differ") for w in comparison.warnings)


def test_different_jobs_machines_and_short_runs_are_said() -> None:
    rng = np.random.default_rng(6)
    other = {"cpu_model": "Intel Xeon", "torch": "2.14.0", "logical_cores": 2}
    comparison = compare_runs(
        fake_run("a", noisy(rng, 50)), fake_run("b", noisy(rng, 50, steps=6), system=other, batch_size=16)
    )
    assert comparison.not_comparable == ["different batch size (1 vs 16)"]
    assert "measured with a different CPU (AMD EPYC vs Intel Xeon)" in comparison.warnings
    assert "measured with a different torch (2.15.0 vs 2.14.0)" in comparison.warnings
    assert any(w.startswith("candidate has 6 steady step(s), fewer than 10") for w in comparison.warnings)
    assert {line.verdict for line in comparison.lines} == {"too few steps"}


def test_interleaved_rounds_are_paired() -> None:
    """Round drift (x1, x0.8, x1.2) hits both alike: the paired ratio sees the candidate's 10 % exactly."""
    drift = [1.0, 0.8, 1.2, 0.9]
    base = [fake_run(f"a{i}", np.full(30, 50.0)) for i in range(4)]
    cand = [fake_run(f"b{i}", np.full(30, 55.0)) for i in range(4)]
    for runs, fps in ((base, 160.0), (cand, 160 / 1.1)):
        for run, d in zip(runs, drift, strict=True):
            run.summary["steady_fps"] = fps * d
    comparison = compare_rounds(base, cand, baseline="A", candidate="B")
    line = comparison.line("throughput")
    assert line is not None and line.ratio is not None
    assert line.ratio.value == pytest.approx(1 / 1.1)
    assert line.verdict == "slower" and comparison.rounds == 4
    assert comparison.line("exec_latency_ms").verdict == "slower"  # type: ignore[union-attr]


def with_rates(runs: list[RunResult], rates: list[float]) -> list[RunResult]:
    for run, rate in zip(runs, rates, strict=True):
        run.summary["steady_fps"] = rate
    return runs


def test_several_runs_a_side_are_judged_by_their_run_to_run_spread() -> None:
    """Five baseline runs that stray by a few percent: a candidate run 15 % slower is slower; one 2 %
    slower is within the spread; the spread of the baseline's runs judges a single candidate run."""
    rates = [160.0, 150.0, 156.0, 158.0, 152.0]
    base = with_rates([fake_run(f"a{i}", np.full(30, 50.0)) for i in range(5)], rates)
    slow = with_rates([fake_run("b", np.full(30, 58.0))], [133.0])
    close = with_rates([fake_run("c", np.full(30, 51.0))], [152.0])
    comparison = compare_groups(base, slow, baseline="A", candidate="B")
    line = comparison.line("throughput")
    assert comparison.method == "runs" and line is not None and line.ratio is not None
    assert line.verdict == "slower"
    assert line.ratio.value == pytest.approx(133 / float(np.prod(rates)) ** (1 / 5))
    assert comparison.line("exec_latency_ms").verdict == "slower"  # type: ignore[union-attr]
    assert compare_groups(base, close, baseline="A", candidate="C").lines[0].verdict == "no measurable change"
    alone = compare_groups(base[:1], close, baseline="A", candidate="C")
    assert alone.lines[0].verdict == "too few runs"
    assert "one run on each side: no run-to-run variation to judge by" in alone.warnings


# --- real runs through the command line ---------------------------------------------------------------


INPUT = "synthetic:640x480:192"
"""48 steps of 4 frames: enough steady steps for intervals on a loaded machine, a few seconds per run."""


def make_run(out_dir: Path, name: str, **flat: Any) -> Path:
    flat = {"model_name": SMALL, "batch_size": 4, "progress": "none", "warmup_steps": 2, **flat}
    config = RunConfig.from_flat(input_path=INPUT, output_dir=str(out_dir), run_name=name, **flat)
    result = framescope.run(config)
    assert result.status == "complete"
    return result.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same job with simple and complex preprocessing (colour jitter and blur make prep several times
    slower: a regression the gate must see on ``--metric prep``), and another model."""
    out = tmp_path_factory.mktemp("compare-runs")
    return {
        "base": make_run(out, "base", prep_level="simple"),
        "heavy": make_run(out, "heavy", prep_level="complex"),
        "other": make_run(out, "other", model_name="resnet18", max_steps=12),
    }


def test_a_run_against_itself_passes_the_gate(runs: dict[str, Path]) -> None:
    done = run_cli("compare", str(runs["base"]), str(runs["base"]), "--fail-on-regression", "5")
    assert done.code == 0, done.err
    assert "throughput no measurable change (+0.0 %" in done.out
    assert "gate: pass: no throughput regression beyond 5 % shown" in done.out


def test_the_gate_fails_on_a_stage_that_regressed(runs: dict[str, Path]) -> None:
    done = run_cli(
        "compare",
        str(runs["base"]),
        str(runs["heavy"]),
        "--fail-on-regression",
        "10",
        "--metric",
        "prep",
        "--json",
    )
    assert done.code == 1, done.err
    report = json.loads(done.out)
    prep = next(line for line in report["lines"] if line["metric"] == "prep_latency_ms")
    assert prep["verdict"] == "slower" and prep["ratio"]["low"] > 1.1
    assert report["gate"]["failed"] and report["gate"]["regressions"] == ["prep_latency_ms"]
    assert report["changed"] == ["prep_level: simple -> complex"] and report["comparable"]


def test_markdown_is_a_table_for_a_pull_request(runs: dict[str, Path]) -> None:
    done = run_cli("compare", str(runs["base"]), str(runs["heavy"]), "--format", "markdown")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("### framescope compare: throughput ")
    header = lines.index("| metric | baseline | candidate | change | 95 % CI | verdict |")
    assert lines[header + 1] == "|---|---:|---:|---:|---:|---|"
    prep = next(line for line in lines if line.startswith("| prep (ms) |"))
    assert prep.endswith("| **slower** |")
    assert "Changed: `prep_level: simple -> complex`" in lines


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["{base}", "{missing}"], "run directory"),
        (["{base}", "{other}", "--fail-on-regression", "5"], "cannot gate: the runs are different jobs"),
        (
            ["{base}", "{heavy}", "--metric", "nope", "--fail-on-regression", "5"],
            "--metric: unknown metric 'nope'",
        ),
        (["--rerun", "{base}", "{heavy}", "--rounds", "2"], "--rounds 2 is too few for an interval"),
        (["--rerun", "{base}", "{missing}"], "the candidate '{missing}' does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, args: list[str], start: str
) -> None:
    places = {**{k: str(v) for k, v in runs.items()}, "missing": str(tmp_path / "nope")}
    done = run_cli("compare", *(a.format(**places) for a in args))
    assert done.code == 2, done.err
    assert len(done.err.strip().splitlines()) == 1, done.err
    assert done.err.startswith(f"framescope: error: {start.format(**places)}"), done.err


def test_different_jobs_can_be_gated_with_force(runs: dict[str, Path]) -> None:
    done = run_cli("compare", str(runs["base"]), str(runs["other"]), "--fail-on-regression", "5", "--force")
    assert done.code in (0, 1), done.err
    assert "not comparable: different model name (mobilenet_v3_small vs resnet18)" in done.out


@pytest.mark.slow
def test_rerun_measures_both_again_in_interleaved_rounds(runs: dict[str, Path], tmp_path: Path) -> None:
    candidate = tmp_path / "heavy.yaml"
    config = config_of(runs["heavy"], "candidate").replace(max_steps=20)
    candidate.write_text(config.to_yaml())
    assert overrides_between(config_of(runs["base"], "baseline"), config) == {
        "prep_level": "complex",
        "max_steps": 20,
    }
    done = run_cli(
        "compare", "--rerun", str(runs["base"]), str(candidate), "--rounds", "3",
        "--output-dir", str(tmp_path), "--json", "--fail-on-regression", "10", "--metric", "prep",
    )  # fmt: skip
    assert done.code == 1, done.err
    report = json.loads(done.out)
    assert report["method"] == "rounds" and report["rounds"] == 3
    assert report["gate"]["regressions"] == ["prep_latency_ms"]
    (parent,) = tmp_path.glob("compare-*")
    assert json.loads((parent / "compare.json").read_text())["lines"] == report["lines"]
    assert sorted(p.name for p in (parent / "candidate").iterdir()) == ["round-1", "round-2", "round-3"]
    assert sorted(p.name for p in (parent / "baseline").iterdir()) == ["round-1", "round-2", "round-3"]
    assert "round 1 baseline:" in done.err and "round 3 candidate:" in done.err
    done = run_cli("compare", str(parent / "baseline"), str(parent / "candidate"), "--json")
    assert done.code == 0, done.err
    runs_mode = json.loads(done.out)
    assert runs_mode["method"] == "runs"  # three run directories a side, judged by their spread
    assert next(x for x in runs_mode["lines"] if x["metric"] == "prep_latency_ms")["verdict"] == "slower"


def test_ctrl_c_during_a_rerun_keeps_the_rounds_that_finished(tmp_path: Path) -> None:
    """Ctrl-C in the third run (round 2's first): round 1's pair is compared, the rest is not invented."""
    calls: list[str] = []

    def fake(config: RunConfig, observer: Any = None) -> RunResult:
        calls.append(config.output_dir)
        if len(calls) == 3:
            raise KeyboardInterrupt
        run = fake_run(str(Path(config.output_dir) / str(config.run_name)), np.full(30, 50.0))
        run.summary["steady_fps"] = 160.0 if config.preprocess.level == "simple" else 120.0
        return run

    base = RunConfig.from_flat(model_name=SMALL, input_path="clip.mp4", prep_level="simple")
    comparison, parent, interrupted = rerun(
        base, base.replace(prep_level="complex"), output_dir=tmp_path, rounds=3, names=("a", "b"), run=fake
    )
    assert interrupted and len(calls) == 3
    assert comparison.rounds == 1 and comparison.lines[0].verdict == "too few runs"
    assert "1 round(s): an interval needs at least 3 (--rounds)" in comparison.warnings
    assert json.loads((parent / "compare.json").read_text())["rounds"] == 1
