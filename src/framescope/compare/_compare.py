"""Two runs of one job, compared line by line with the noise each run shows: throughput and every stage,
a confidence interval from the steps themselves, and a verdict only where the data can carry one.

Two sources of numbers:

* **Two run directories** (``compare BASELINE CANDIDATE``): each line's interval is a moving-block bootstrap
  of the two runs' steady steps (blocks keep a slow minute's streak of slow steps together), and its verdict
  also needs the change to exceed the *noise floor*: how far each run's own quarters disagree. A shared
  machine's drift shows up as exactly that disagreement, so two runs of one job on a noisy VM are not called
  different merely because a per-step interval is narrow.
* **Interleaved rounds** (``compare --rerun``): each round ran both, side by side; a line's ratio is the
  geometric mean of per-round ratios with a Student-t interval (:func:`framescope.stats.paired_ratio`),
  and the interval alone decides: the rounds already hold the run-to-run noise.

Reads run directories only (DESIGN.md), and computes nothing :mod:`framescope.stats` does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framescope.records import RunResult, steady_rows
from framescope.stats import (
    Ratio,
    block_bootstrap_ratio,
    median_of,
    paired_ratio,
    rate_of,
    segment_drift,
    unpaired_ratio,
)

THROUGHPUT = "throughput"
MIN_STEPS = 10
"""Fewer steady steps than this in either run: no interval, no verdict (and no CI gate)."""
UNSTABLE_DRIFT = 0.10
"""A run whose quarters disagree by more than this (in rate) is flagged unstable (perf_analyzer's ±10 %)."""

JOB_SETTINGS = ("model_name", "mode", "input_path", "batch_size", "weights", "split_point", "num_classes")
"""Settings that make a different job, not a different way of running one: two runs that differ in any of
them are not comparable (their difference is not a regression)."""
IGNORED_SETTINGS = frozenset({"output_dir", "run_name", "progress", "seed"})
"""Settings that do not change what is measured."""
SYSTEM_FACTS = (
    ("cpu_model", "CPU"),
    ("logical_cores", "logical cores"),
    ("torch", "torch"),
    ("cuda_version", "CUDA"),
    ("cudnn_version", "cuDNN"),
    ("nvidia_driver", "NVIDIA driver"),
    ("gpus", "GPUs"),
)


@dataclass(frozen=True)
class Line:
    """One metric of the comparison: throughput (FPS, higher is better) or a stage (median ms per step,
    lower is better)."""

    metric: str
    """``throughput`` or a stage's CSV column (``exec_latency_ms``)."""
    label: str
    unit: str
    baseline: float
    candidate: float
    ratio: Ratio | None
    """candidate / baseline with its interval; None when there were too few steps."""
    noise: float
    """The relative change the data cannot tell from noise (0 for interleaved rounds: their interval holds
    it)."""
    verdict: str
    """``faster``, ``slower`` or ``no measurable change`` (``too few steps``)."""

    @property
    def higher_is_better(self) -> bool:
        return self.metric == THROUGHPUT

    @property
    def change_pct(self) -> float:
        return (self.candidate / self.baseline - 1) * 100 if self.baseline else math.nan

    def slower_by_more_than(self, pct: float) -> bool:
        """Whether this line is a regression beyond ``pct`` percent with confidence: the verdict is
        ``slower`` and the whole interval lies beyond ``pct``."""
        if self.ratio is None or self.verdict != "slower":
            return False
        if self.higher_is_better:
            return self.ratio.high < 1 - pct / 100
        return self.ratio.low > 1 + pct / 100

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "label": self.label,
            "unit": self.unit,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "change_pct": self.change_pct,
            "ratio": asdict(self.ratio) if self.ratio is not None else None,
            "noise_floor": self.noise if math.isfinite(self.noise) else None,
            "verdict": self.verdict,
        }


@dataclass
class Comparison:
    baseline: str
    candidate: str
    method: str
    """``steps`` (one run directory each), ``runs`` (several independent runs on a side) or ``rounds``
    (interleaved reruns, paired)."""
    lines: list[Line]
    changed: list[str] = field(default_factory=list)
    """Settings that differ, as ``name: baseline -> candidate`` (what the candidate changed)."""
    not_comparable: list[str] = field(default_factory=list)
    """Why the two are not one job measured twice (different model, input, batch size, mode)."""
    warnings: list[str] = field(default_factory=list)
    """What weakens the comparison: another machine or library version, few steps, an unstable run."""
    rounds: int | None = None

    @property
    def comparable(self) -> bool:
        return not self.not_comparable

    def line(self, metric: str) -> Line | None:
        return next((line for line in self.lines if line.metric == metric), None)

    def regressions(self, pct: float, metrics: list[str]) -> list[Line]:
        return [line for line in self.lines if line.metric in metrics and line.slower_by_more_than(pct)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "method": self.method,
            "rounds": self.rounds,
            "comparable": self.comparable,
            "not_comparable": self.not_comparable,
            "changed": self.changed,
            "warnings": self.warnings,
            "lines": [line.as_dict() for line in self.lines],
        }


def stage_label(column: str) -> str:
    return column.removesuffix("_latency_ms").removesuffix("_ms").replace("_", " ")


def resolve_metric(name: str, columns: list[str]) -> str:
    """``throughput``, or a stage by its column (``exec_latency_ms``) or short name (``exec``,
    ``queue_wait``); ValueError naming the choices otherwise."""
    if name == THROUGHPUT:
        return name
    for column in columns:
        if name in (column, stage_label(column), stage_label(column).replace(" ", "_")):
            return column
    choices = ", ".join([THROUGHPUT, *(stage_label(c).replace(" ", "_") for c in columns)])
    raise ValueError(f"unknown metric {name!r}; choose from {choices}")


def _stage_columns(result: RunResult) -> list[str]:
    stages = result.summary.get("stages") or {}
    return [column for column in stages if column != "total_step_latency_ms"]


def stage_columns(baseline: RunResult, candidate: RunResult) -> list[str]:
    """The stages both runs timed (with steps), in the baseline's order."""
    other = set(_stage_columns(candidate))
    return [column for column in _stage_columns(baseline) if column in other]


def _verdict(ratio: Ratio, noise: float, higher_is_better: bool) -> str:
    if math.isfinite(noise) and abs(ratio.value - 1) <= noise:
        return "no measurable change"
    if ratio.low > 1:
        return "faster" if higher_is_better else "slower"
    if ratio.high < 1:
        return "slower" if higher_is_better else "faster"
    return "no measurable change"


def _steady(result: RunResult) -> pd.DataFrame:
    rows = steady_rows(result.rows)
    return rows[rows["total_step_latency_ms"] > 0]


def _flat_config(result: RunResult) -> dict[str, Any]:
    from framescope.config import RunConfig, flat_values

    try:
        return flat_values(RunConfig.from_dict(result.config))
    except Exception:  # an old or hand-edited config.yaml: compare what it says, section by section
        flat: dict[str, Any] = {}
        for key, value in result.config.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat


def _describe(value: Any) -> str:
    return "default" if value is None else str(value)


def settings_differences(baseline: RunResult, candidate: RunResult) -> tuple[list[str], list[str]]:
    """(changed settings, job differences): every setting that differs, ``name: a -> b``; the ones that make
    another job listed again as reasons the two are not comparable."""
    a, b = _flat_config(baseline), _flat_config(candidate)
    changed, job = [], []
    for name in sorted(set(a) | set(b)):
        if name in IGNORED_SETTINGS or a.get(name) == b.get(name):
            continue
        text = f"{name}: {_describe(a.get(name))} -> {_describe(b.get(name))}"
        changed.append(text)
        if name.removeprefix("model.").removeprefix("source.") in JOB_SETTINGS:
            job.append(
                f"different {name.replace('_', ' ')} ({_describe(a.get(name))} vs {_describe(b.get(name))})"
            )
    return changed, job


def system_differences(baseline: RunResult, candidate: RunResult) -> list[str]:
    out = []
    for key, label in SYSTEM_FACTS:
        a, b = baseline.system.get(key), candidate.system.get(key)
        if key == "gpus":
            a = [g.get("name") if isinstance(g, dict) else g for g in a or []]
            b = [g.get("name") if isinstance(g, dict) else g for g in b or []]
        if a != b and (a is not None or b is not None):
            out.append(f"measured with a different {label} ({_describe(a)} vs {_describe(b)})")
    return out


def _load_warnings(name: str, result: RunResult) -> list[str]:
    """Other processes or the hypervisor took cores during the run (from its own CPU record)."""
    cpu = result.summary.get("cpu") or {}
    warnings = []
    others, steal, cores = cpu.get("others"), cpu.get("steal"), cpu.get("cores")
    if isinstance(others, (int, float)) and isinstance(cores, (int, float)) and others >= 0.25:
        warnings.append(f"{name}: other processes used {others:.2f} of {cores} core(s) during the run")
    if isinstance(steal, (int, float)) and steal >= 0.05:
        warnings.append(f"{name}: the hypervisor took {steal:.2f} core(s) (steal) during the run")
    return warnings


def compare_runs(baseline: RunResult, candidate: RunResult, *, seed: int = 0) -> Comparison:
    """Two finished run directories, step by step (see the module's description)."""
    changed, job = settings_differences(baseline, candidate)
    warnings = system_differences(baseline, candidate)
    rows = {"baseline": _steady(baseline), "candidate": _steady(candidate)}
    for name, result in (("baseline", baseline), ("candidate", candidate)):
        count = len(rows[name])
        if count < MIN_STEPS:
            warnings.append(
                f"{name} has {count} steady step(s), fewer than {MIN_STEPS}: no interval or verdict; run it "
                "longer (more frames, or a larger --max-steps)"
            )
        else:
            steps = rows[name]
            drift = segment_drift(
                [steps["frames"].to_numpy(), steps["total_step_latency_ms"].to_numpy()], rate_of
            )
            if drift > UNSTABLE_DRIFT:
                warnings.append(
                    f"{name} is unstable: its quarters' rates differ from its whole by up to {drift:.0%} "
                    f"(more than {UNSTABLE_DRIFT:.0%}); verdicts need a change larger than that"
                )
        warnings += _load_warnings(name, result)
    warnings.append(
        "one run on each side: the intervals hold step-to-step noise and each run's own drift, not the "
        "run-to-run variation of this machine; for a gate, compare several runs per side (a directory of "
        "run directories) or use --rerun"
    )
    enough = all(len(frame) >= MIN_STEPS for frame in rows.values())
    lines = [_throughput_line(rows, enough, seed)]
    for column in stage_columns(baseline, candidate):
        lines.append(_stage_line(column, rows, enough, seed))
    return Comparison(str(baseline.run_dir), str(candidate.run_dir), "steps", lines, changed, job, warnings)


def _throughput_line(rows: dict[str, pd.DataFrame], enough: bool, seed: int) -> Line:
    columns = {name: [frame["frames"], frame["total_step_latency_ms"]] for name, frame in rows.items()}
    values = {
        name: float(rate_of(*(np.asarray(c, dtype=float)[None, :] for c in cols))[0])
        if len(cols[0])
        else math.nan
        for name, cols in columns.items()
    }
    return _line(THROUGHPUT, "throughput", "FPS", values, columns, rate_of, enough, seed)


def _stage_line(column: str, rows: dict[str, pd.DataFrame], enough: bool, seed: int) -> Line:
    columns = {name: [frame[column].dropna()] for name, frame in rows.items()}
    values = {name: float(np.median(cols[0])) if len(cols[0]) else math.nan for name, cols in columns.items()}
    enough = enough and all(len(cols[0]) >= MIN_STEPS for cols in columns.values())
    return _line(column, stage_label(column), "ms", values, columns, median_of, enough, seed)


def _line(  # noqa: PLR0917 (one line's parts, named at the two call sites)
    metric: str,
    label: str,
    unit: str,
    values: dict[str, float],
    columns: dict[str, list[Any]],
    statistic: Any,
    enough: bool,
    seed: int,
) -> Line:
    higher = metric == THROUGHPUT
    if not enough or not values["baseline"] or not math.isfinite(values["baseline"]):
        return Line(
            metric, label, unit, values["baseline"], values["candidate"], None, math.inf, "too few steps"
        )
    if values["baseline"] == 0 or values["candidate"] == 0:  # a stage that takes no time in one run
        return Line(metric, label, unit, values["baseline"], values["candidate"], None, math.inf, "not timed")
    ratio = block_bootstrap_ratio(columns["baseline"], columns["candidate"], statistic, seed=seed)
    noise = max(segment_drift(columns[name], statistic) for name in ("baseline", "candidate"))
    return Line(
        metric,
        label,
        unit,
        values["baseline"],
        values["candidate"],
        ratio,
        noise,
        _verdict(ratio, noise, higher),
    )


def compare_rounds(
    baseline_runs: list[RunResult],
    candidate_runs: list[RunResult],
    *,
    baseline: str,
    candidate: str,
) -> Comparison:
    """Runs made in interleaved rounds, paired round by round (the i-th of each list ran side by side)."""
    if len(baseline_runs) != len(candidate_runs) or not baseline_runs:
        raise ValueError("paired rounds need the same, non-zero number of runs on each side")
    comparison = _compare_groups(baseline_runs, candidate_runs, baseline, candidate, paired=True)
    if len(baseline_runs) < 3:
        comparison.warnings.append(f"{len(baseline_runs)} round(s): an interval needs at least 3 (--rounds)")
    return comparison


def compare_groups(
    baseline_runs: list[RunResult],
    candidate_runs: list[RunResult],
    *,
    baseline: str,
    candidate: str,
) -> Comparison:
    """Several runs of each side, made independently (not interleaved): each run's steady rate and stage
    medians are one sample, and the interval comes from how far the runs of a side stray from each other
    (:func:`framescope.stats.unpaired_ratio`)."""
    if not baseline_runs or not candidate_runs:
        raise ValueError("each side needs at least one run")
    comparison = _compare_groups(baseline_runs, candidate_runs, baseline, candidate, paired=False)
    if max(len(baseline_runs), len(candidate_runs)) < 2:
        comparison.warnings.append("one run on each side: no run-to-run variation to judge by")
    return comparison


def _compare_groups(
    baseline_runs: list[RunResult],
    candidate_runs: list[RunResult],
    baseline: str,
    candidate: str,
    *,
    paired: bool,
) -> Comparison:
    changed, job = settings_differences(baseline_runs[0], candidate_runs[0])
    warnings: list[str] = []
    sides = {"baseline": baseline_runs, "candidate": candidate_runs}
    for name, runs in sides.items():
        for run in runs[1:]:
            _, own_job = settings_differences(runs[0], run)
            if own_job:
                job.append(f"the {name}'s runs are different jobs ({'; '.join(own_job)})")
        for index, run in enumerate(runs, 1):
            label = name if len(runs) == 1 else f"{name} {'round' if paired else 'run'} {index}"
            warnings += _load_warnings(label, run)
    warnings += system_differences(baseline_runs[0], candidate_runs[0])
    rates = {
        name: [float(r.summary.get("steady_fps") or math.nan) for r in runs] for name, runs in sides.items()
    }
    lines = [_runs_line(THROUGHPUT, "throughput", "FPS", rates, paired)]
    for column in stage_columns(baseline_runs[0], candidate_runs[0]):
        medians = {name: [_stage_median(run, column) for run in runs] for name, runs in sides.items()}
        lines.append(_runs_line(column, stage_label(column), "ms", medians, paired))
    method = "rounds" if paired else "runs"
    rounds = len(baseline_runs) if paired else None
    return Comparison(baseline, candidate, method, lines, changed, job, warnings, rounds=rounds)


def _stage_median(run: RunResult, column: str) -> float:
    values = _steady(run)[column].dropna() if column in run.rows else pd.Series(dtype=float)
    return float(np.median(values)) if len(values) else math.nan


def _runs_line(metric: str, label: str, unit: str, values: dict[str, list[float]], paired: bool) -> Line:
    """One line from per-run values: paired by round (the i-th of each side ran side by side) or not."""

    def usable(value: float) -> bool:
        return math.isfinite(value) and value > 0

    if paired:
        pairs = [
            (a, b)
            for a, b in zip(values["baseline"], values["candidate"], strict=True)
            if usable(a) and usable(b)
        ]
        base_values, cand_values = [a for a, _ in pairs], [b for _, b in pairs]
    else:
        base_values = [v for v in values["baseline"] if usable(v)]
        cand_values = [v for v in values["candidate"] if usable(v)]
    base = float(np.median(base_values)) if base_values else math.nan
    cand = float(np.median(cand_values)) if cand_values else math.nan
    enough = len(base_values) >= 2 if paired else max(len(base_values), len(cand_values)) >= 2
    if not enough or not base_values or not cand_values:
        return Line(metric, label, unit, base, cand, None, math.inf, "too few runs")
    ratio = paired_ratio(base_values, cand_values) if paired else unpaired_ratio(base_values, cand_values)
    return Line(metric, label, unit, base, cand, ratio, 0.0, _verdict(ratio, 0.0, metric == THROUGHPUT))


def load_side(path: Path) -> list[RunResult]:
    """A side of a comparison: one run directory, or a directory of run directories (several runs of one
    job, e.g. ``compare --rerun``'s ``baseline/round-N``), each read as the report reads it (one line naming
    a bad one)."""
    from framescope.report.html import METRICS_GLOB, launched_runs, load_runs

    launched = launched_runs(path)
    if launched != [path]:  # a launch directory: its workers (replicas of one job compare as several runs)
        return load_runs(launched)
    if path.is_dir() and not any(path.glob(METRICS_GLOB)):
        inner = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob(METRICS_GLOB)))
        if inner:
            return load_runs(inner)
    return load_runs([path])


def compare_paths(baseline: Path, candidate: Path) -> Comparison:
    """``framescope compare BASELINE CANDIDATE``: one run each is compared step by step, several runs on
    either side run by run."""
    base_runs, cand_runs = load_side(baseline), load_side(candidate)
    if len(base_runs) == 1 and len(cand_runs) == 1:
        return compare_runs(base_runs[0], cand_runs[0])
    return compare_groups(base_runs, cand_runs, baseline=str(baseline), candidate=str(candidate))
