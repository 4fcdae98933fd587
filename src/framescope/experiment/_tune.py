"""The fix, measured: every flag fix the diagnosis proposed, run against the original job side by side.

Each finding's ``overrides`` become a candidate; the original and the candidates run in interleaved rounds
(:class:`~framescope.experiment.Experiment`), and each candidate's speedup is the geometric mean of its
per-round ratios to the original with a Student-t interval (:func:`framescope.stats.paired_ratio`). A
candidate is ``faster`` when the whole interval lies above 1, ``slower`` when below, and otherwise "no
measurable change": suggested, measured, no gain is a result too. Several compatible changes are also measured
all together from the start; an undecided change that may help gets more rounds. The single changes that
helped are combined and the combination measured against the original; the fastest measured candidate is the
recommendation. ``tune.json`` in the run directory records all of it; the runs are ordinary run directories
under ``RUN_DIR/tune``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framescope._secrets import redact_value
from framescope.config import RunConfig, command_line, flags_for, flat_values
from framescope.experiment._runner import Candidate, Experiment, Outcome, RunFunction, StopRule, Trial
from framescope.records import RunResult, RunWriter
from framescope.stats import Ratio, paired_ratio

TUNE_FILE = "tune.json"
LEVERS = frozenset(
    {
        "torch_threads",
        "decode_threads",
        "decoder",
        "decode_size",
        "pipeline",
        "batch_size",
        "prep_on_gpu",
        "post_on_gpu",
        "use_amp",
        "enable_compile",
    }
)
"""What tuning may change: how the job runs, never the model or what it computes."""


@dataclass(frozen=True)
class Change:
    findings: tuple[str, ...]
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", "+".join(self.findings))


def changes_to_try(findings: list[dict[str, Any]], config: RunConfig) -> list[Change]:
    """The distinct flag fixes of ``findings`` that change something and only pull allowed levers."""
    current = flat_values(config)
    changes: list[Change] = []
    for finding in findings:
        overrides = {k: v for k, v in (finding.get("overrides") or {}).items() if current.get(k) != v}
        if not overrides or not set(overrides) <= LEVERS:
            continue
        same = next((c for c in changes if c.overrides == overrides), None)
        if same is not None:
            changes[changes.index(same)] = Change((*same.findings, finding["id"]), overrides)
        else:
            changes.append(Change((finding["id"],), overrides))
    return changes


def verdict(ratio: Ratio) -> str:
    if ratio.low > 1.0:
        return "faster"
    if ratio.high < 1.0:
        return "slower"
    return "no measurable change"


def _paired(baseline: Outcome, candidate: Outcome) -> tuple[list[float], list[float]]:
    """The rates of the rounds both completed, matched by round."""
    base, cand = baseline.fps_by_round(), candidate.fps_by_round()
    rounds = sorted(set(base) & set(cand))
    return [base[r] for r in rounds], [cand[r] for r in rounds]


def _together(changes: list[Change]) -> Change | None:
    """All the changes at once, when there are several and no two set one setting differently: fixes often
    pay only together (overlap pays once decoding is cheap), so the combination is measured from the start."""
    if len(changes) < 2:
        return None
    merged: dict[str, Any] = {}
    for change in changes:
        for key, value in change.overrides.items():
            if merged.setdefault(key, value) != value:
                return None
    return Change(("all",), merged)


PROMISING = 1.05
"""An undecided change whose estimate is at least this gain earns more rounds (up to ``max_rounds``)."""


def _undecided(baseline: Outcome, outcome: Outcome) -> bool:
    """Whether more rounds could decide a change that may help: its interval holds 1, its estimate a gain."""
    base_fps, cand_fps = _paired(baseline, outcome)
    if outcome.failed is not None or len(base_fps) < 2:
        return False
    ratio = paired_ratio(base_fps, cand_fps)
    return verdict(ratio) == "no measurable change" and ratio.value >= PROMISING


def _tied_with_simpler(outcomes: list[Outcome]) -> list[str]:
    """The fastest faster change and a faster one with fewer settings that it does not yet beat round for
    round: more rounds decide whether the extra settings pay (else the simpler one is kept, undecided)."""
    baseline, faster = outcomes[0], []
    for outcome in outcomes[1:]:
        base_fps, cand_fps = _paired(baseline, outcome)
        if outcome.failed is None and len(base_fps) >= 2:
            ratio = paired_ratio(base_fps, cand_fps)
            if verdict(ratio) == "faster":
                faster.append((ratio.value, outcome))
    if len(faster) < 2:
        return []
    faster.sort(key=lambda pair: -pair[0])
    best = faster[0][1]
    for _, simpler in faster[1:]:
        if len(simpler.candidate.overrides) >= len(best.candidate.overrides):
            continue
        simple_fps, best_fps = _paired(simpler, best)
        if len(simple_fps) >= 2 and verdict(paired_ratio(simple_fps, best_fps)) != "faster":
            return [simpler.candidate.name, best.candidate.name]
    return []


def _trial_record(
    name: str, overrides: dict[str, Any], baseline: Outcome, outcome: Outcome, *, pass_index: int = 1,
    base_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    base_fps, cand_fps = _paired(baseline, outcome)
    failed = outcome.failed
    record: dict[str, Any] = {
        "finding": name,
        "pass": pass_index,
        "base_overrides": dict(base_overrides or {}),
        "overrides": overrides,
        "flags": " ".join(flags_for(overrides)),
        "baseline_fps": base_fps,
        "candidate_fps": cand_fps,
        "speedup": None,
        "verdict": "failed",
        "error": failed.error if failed is not None else None,
        "status": failed.status if failed is not None else "complete",
        "run_dirs": [str(t.run_dir) for t in outcome.trials if t.run_dir is not None],
        "stable_rounds": sum(t.stable for t in outcome.trials),
    }
    if base_fps and failed is None:
        ratio = paired_ratio(base_fps, cand_fps)
        record["speedup"] = {"value": ratio.value, "low": ratio.low, "high": ratio.high}
        record["verdict"] = verdict(ratio)
    return record


@dataclass
class _Pass:
    """What one pass measured: its trial records, the fastest change that was faster than the pass's
    baseline (None if none was), and whether Ctrl-C cut it short."""

    records: list[dict[str, Any]]
    best: dict[str, Any] | None
    interrupted: bool
    best_run: RunResult | None = None
    """The last run of the fastest change, which the next pass diagnoses."""
    note: str | None = None


class _Tuner:
    """The measuring behind :func:`tune`: passes of interleaved experiments, each against its own baseline."""

    def __init__(
        self,
        config: RunConfig,
        parent: Path,
        *,
        rounds: int,
        max_rounds: int,
        stop: StopRule | None,
        on_trial: Callable[[Trial], None],
        run: RunFunction | None,
    ) -> None:
        self.config, self.parent = config, parent
        self.rounds, self.max_rounds = rounds, max_rounds
        self.stop, self.on_trial, self.run = stop, on_trial, run
        self.outcome_of: dict[str, Outcome] = {}

    def experiment(self, base: dict[str, Any], candidates: list[Candidate], parent: Path) -> Experiment:
        return Experiment(
            self.config.replace(**base),
            [Candidate("original" if not base else "baseline"), *candidates],
            parent=parent,
            rounds=self.rounds,
            stop=self.stop,
            on_trial=self.on_trial,
            run=self.run,
        )

    def measure_pass(self, pass_index: int, base: dict[str, Any], changes: list[Change]) -> _Pass:
        """Each change on top of ``base`` (and all of them together), against ``base`` itself; undecided
        changes that may help get more rounds; the faster single changes are then measured together."""
        together = _together(changes)
        measured = [*changes, together] if together is not None else changes
        folder = self.parent / f"pass-{pass_index}"
        candidates = [Candidate(f"{i + 1}-{c.name}", c.overrides) for i, c in enumerate(measured)]
        experiment = self.experiment(base, candidates, folder)
        outcomes = experiment.run()
        while experiment.rounds_run < self.max_rounds and not experiment.interrupted:
            pending = [o.candidate.name for o in outcomes[1:] if _undecided(outcomes[0], o)]
            pending += [name for name in _tied_with_simpler(outcomes) if name not in pending]
            if not pending:
                break
            outcomes = experiment.extend(pending)
        last_runs = {c.name: _last_run(o) for c, o in zip(measured, outcomes[1:], strict=True)}
        self.outcome_of = {c.name: o for c, o in zip(measured, outcomes[1:], strict=True)}
        records = [
            _trial_record(
                "+".join(change.findings),
                change.overrides,
                outcomes[0],
                outcome,
                pass_index=pass_index,
                base_overrides=base,
            )
            for change, outcome in zip(measured, outcomes[1:], strict=True)
        ]
        if experiment.interrupted:
            return self._result(records, last_runs, True)
        singles = [r for r in records if r["verdict"] == "faster" and r["finding"] != "all"]
        combined: dict[str, Any] = {}
        for record in sorted(singles, key=lambda r: -r["speedup"]["value"]):
            combined.update({k: v for k, v in record["overrides"].items() if k not in combined})
        if len(singles) > 1 and not any(r["overrides"] == combined for r in records):
            again = self.experiment(base, [Candidate("combined", combined)], folder / "combined")
            pair = again.run()
            last_runs["combined"] = _last_run(pair[1])
            records.append(
                _trial_record(
                    "combined", combined, pair[0], pair[1], pass_index=pass_index, base_overrides=base
                )
            )
            if again.interrupted:
                return self._result(records, last_runs, True)
        return self._result(records, last_runs, False)

    def _result(
        self, records: list[dict[str, Any]], last_runs: dict[str, RunResult | None], stopped: bool
    ) -> _Pass:
        best, note = _simplest_fastest(records, self.outcome_of)
        best_run = last_runs.get(_key(best["finding"])) if best else None
        return _Pass(records, best, stopped, best_run, note)

    def confirm(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The final command against the original, side by side: the gain of several passes, measured."""
        pair = self.experiment({}, [Candidate("final", overrides)], self.parent / "final").run()
        return _trial_record("final", overrides, pair[0], pair[1], pass_index=0)


def _key(finding: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", finding)


def _simplest_fastest(
    records: list[dict[str, Any]], outcomes: dict[str, Outcome]
) -> tuple[dict[str, Any] | None, str | None]:
    """The fastest change that was faster; but a change with fewer settings when the fastest was not
    measurably faster than it, round for round (keep only the changes that help). With a note saying so."""
    helpful = sorted((r for r in records if r["verdict"] == "faster"), key=lambda r: -r["speedup"]["value"])
    if not helpful:
        return None, None
    best = helpful[0]
    best_outcome = outcomes.get(_key(best["finding"]))
    for simpler in sorted(helpful[1:], key=lambda r: len(r["overrides"])):
        if len(simpler["overrides"]) >= len(best["overrides"]):
            break
        outcome = outcomes.get(_key(simpler["finding"]))
        if best_outcome is None or outcome is None:
            continue  # measured in another experiment: no rounds to pair
        base_fps, best_fps = _paired(outcome, best_outcome)
        if len(base_fps) < 2 or verdict(paired_ratio(base_fps, best_fps)) == "faster":
            continue
        return simpler, (
            f"{best['finding']} ({best['flags']}, {best['speedup']['value']:.2f}x) was not measurably faster "
            f"than {simpler['finding']} ({simpler['flags']}, {simpler['speedup']['value']:.2f}x) round for "
            "round: the change with fewer settings is kept."
        )
    return best, None


def _last_run(outcome: Outcome) -> RunResult | None:
    return next((t.result for t in reversed(outcome.trials) if t.result is not None), None)


def _findings_of(run: RunResult | None) -> list[dict[str, Any]]:
    """The diagnosis of a measured candidate's last run: what the next pass tries."""
    from framescope.diagnose import diagnose

    return [finding.as_dict() for finding in diagnose(run)] if run is not None else []


def tune(
    config: RunConfig,
    findings: list[dict[str, Any]],
    *,
    run_dir: Path,
    rounds: int = 3,
    max_rounds: int | None = None,
    passes: int = 3,
    stop: StopRule | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    run: RunFunction | None = None,
) -> dict[str, Any]:
    """Measure the flag fixes of ``findings`` for ``config``'s job; ``tune.json`` goes into ``run_dir``.

    Pass 1 measures every change against the original, ``rounds`` interleaved rounds each (a change still
    undecided that may help gets more, up to ``max_rounds``: twice ``rounds`` by default). When one was
    faster, the next pass starts from the fastest: its own runs are diagnosed again (a fix often uncovers the
    next bottleneck) and the new changes are measured against it, for up to ``passes`` passes. When more than
    one pass gained, the final command is measured against the original once more, so the speedup reported
    is always measured side by side with the original."""
    max_rounds = max(rounds, max_rounds if max_rounds is not None else 2 * rounds)
    # Each run goes on until its rate is stable (the stop rule), not for the steps the original asked for;
    # no trace either: the profiler's steps would be measured as steady ones are not.
    original, config = config, config.replace(torch_profile=False, max_steps=None)
    report: dict[str, Any] = {
        "original_command": command_line(original),
        "command": command_line(original),
        "overrides": {},
        "speedup": None,
        "rounds": rounds,
        "passes": 0,
        "trials": [],
        "interrupted": False,
        "notes": [],
    }
    runs: list[Trial] = []
    tell = on_trial or (lambda trial: None)

    def on_each(trial: Trial) -> None:
        runs.append(trial)
        tell(trial)

    tuner = _Tuner(
        config, run_dir / "tune", rounds=rounds, max_rounds=max_rounds, stop=stop, on_trial=on_each, run=run
    )
    best: dict[str, Any] = {}
    gains: list[dict[str, Any]] = []  # the fastest record of each pass that gained, in order
    tried: list[dict[str, Any]] = []
    for pass_index in range(1, passes + 1):
        current = config.replace(**best)
        changes = [c for c in changes_to_try(findings, current) if {**best, **c.overrides} not in tried]
        if not changes:
            break
        measured = tuner.measure_pass(pass_index, best, changes)
        if measured.note:
            report["notes"].append(f"pass {pass_index}: {measured.note}")
        report["passes"] = pass_index
        report["trials"].extend(measured.records)
        tried.extend({**best, **r["overrides"]} for r in measured.records)
        if measured.interrupted:
            report["interrupted"] = True
            if measured.best is not None and pass_index == 1:
                gains.append(measured.best)  # measured against the original: it stands
            break
        if measured.best is None:
            break
        gains.append(measured.best)
        best = {**best, **measured.best["overrides"]}
        findings = _findings_of(measured.best_run)
    chosen: dict[str, Any] | None
    if len(gains) > 1 and not report["interrupted"]:
        final = tuner.confirm(best)
        report["trials"].append(final)
        chosen = final if final["verdict"] == "faster" else gains[0]
    else:
        chosen = gains[0] if gains else None
    if chosen is not None:
        total = best if chosen is not gains[0] else gains[0]["overrides"]
        report["overrides"] = total
        report["speedup"] = chosen["speedup"]
        report["command"] = command_line(original.replace(**total))
    unsettled = [t for t in runs if t.status == "complete" and not t.stable]
    if unsettled:
        report["notes"].append(
            f"{len(unsettled)} of {len(runs)} runs ended before their rate was stable (the input ended, or "
            f"{(stop or StopRule()).max_seconds:.0f} s passed): their rates rest on as few as "
            f"{min(t.steps for t in unsettled)} steps; a longer input gives firmer numbers."
        )
    # through the run directory's writer: atomic, and a stream password in a command line is redacted
    RunWriter(run_dir, "").write_json(TUNE_FILE, report)
    return redact_value(report)
