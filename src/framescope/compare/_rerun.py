"""``compare --rerun``: measure the baseline and the candidate again, interleaved (A B, B A, ...), each run
until its rate is stable, the way TorchBench's harness does, and compare the rounds pairwise."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framescope.compare._compare import Comparison, compare_rounds
from framescope.config import RunConfig, flat_values
from framescope.errors import ConfigError
from framescope.experiment import Candidate, Experiment, StopRule, Trial
from framescope.records import CONFIG_FILE

COMPARE_FILE = "compare.json"
UNCHANGED = frozenset({"output_dir", "run_name", "progress"})


def config_of(path: Path, what: str) -> RunConfig:
    """A run configuration from a run directory (its config.yaml) or a YAML config file."""
    if path.is_dir():
        path = path / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(
                f"the {what} {str(path.parent)!r} holds no {CONFIG_FILE}; pass a run directory made by "
                "framescope run, or a YAML run config."
            )
    elif not path.is_file():
        raise ConfigError(
            f"the {what} {str(path)!r} does not exist; pass a run directory or a YAML run config."
        )
    return RunConfig.from_yaml(path)


def overrides_between(baseline: RunConfig, candidate: RunConfig) -> dict[str, Any]:
    """The flat settings ``candidate`` sets differently from ``baseline`` (where the output goes aside)."""
    a, b = flat_values(baseline), flat_values(candidate)
    return {name: value for name, value in b.items() if name not in UNCHANGED and a.get(name) != value}


def rerun(
    baseline: RunConfig,
    candidate: RunConfig,
    *,
    output_dir: Path,
    rounds: int,
    names: tuple[str, str],
    stop: StopRule | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    run: Callable[..., Any] | None = None,
) -> tuple[Comparison, Path, bool]:
    """Both configurations in ``rounds`` interleaved rounds under ``output_dir/compare-TIMESTAMP``; the
    comparison of the rounds both completed, that directory, and whether Ctrl-C cut it short.
    ``compare.json`` there holds the comparison."""
    parent = output_dir / time.strftime("compare-%Y%m%d-%H%M%S")
    suffix = 1
    while parent.exists():
        suffix += 1
        parent = output_dir / f"{time.strftime('compare-%Y%m%d-%H%M%S')}-{suffix}"
    experiment = Experiment(
        baseline,
        [Candidate("baseline"), Candidate("candidate", overrides_between(baseline, candidate))],
        parent=parent,
        rounds=rounds,
        stop=stop,
        on_trial=on_trial,
        run=run,
    )
    base_outcome, cand_outcome = experiment.run()
    for outcome in (base_outcome, cand_outcome):
        failed = outcome.failed
        if failed is not None:
            raise ConfigError(
                f"the {outcome.candidate.name} could not run ({failed.status}: {failed.error}); fix it and "
                "compare again."
            )
    base_runs = {t.round: t.result for t in base_outcome.trials if t.status == "complete" and t.result}
    cand_runs = {t.round: t.result for t in cand_outcome.trials if t.status == "complete" and t.result}
    paired = sorted(set(base_runs) & set(cand_runs))
    if not paired:
        raise ConfigError(
            "no round finished both runs; nothing to compare (Ctrl-C came before the first pair)."
        )
    comparison = compare_rounds(
        [base_runs[r] for r in paired],
        [cand_runs[r] for r in paired],
        baseline=names[0],
        candidate=names[1],
    )
    unstable = sum(
        not t.stable for o in (base_outcome, cand_outcome) for t in o.trials if t.status == "complete"
    )
    if unstable:
        comparison.warnings.append(
            f"{unstable} of {2 * len(paired)} runs ended before their rate was stable (the input ended or "
            "the time cap came): their rates rest on fewer steps"
        )
    parent.mkdir(parents=True, exist_ok=True)
    (parent / COMPARE_FILE).write_text(json.dumps(comparison.as_dict(), indent=2) + "\n", encoding="utf-8")
    return comparison, parent, experiment.interrupted
