"""The rules. Each reads the run record and returns a finding, or None when its situation did not arise (or
the record does not have what it needs yet: the same rules run on a starting run's record, after set-up, and
on the finished one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from framescope.diagnose._finding import Finding
from framescope.records import RunResult

Rule = Callable[[RunResult], Finding | None]
RULES: list[Rule] = []
"""Every rule, in the order their findings are listed."""

COMPETITION_WARN = 0.25
"""Other processes using at least this many of the bound cores make the run's timings untrustworthy."""
STEAL_WARN = 0.10
WAIT_SHARE_WARN = 0.10
"""Threads doing the work waiting for a CPU this share of their ready time is oversubscription's cost."""
IDLE_CORES_WARN = 0.5


def rule(function: Rule) -> Rule:
    """Register ``function`` as a rule."""
    RULES.append(function)
    return function


def diagnose(run: RunResult) -> list[Finding]:
    """Every rule's finding for ``run``, in rule order."""
    return [finding for check in RULES if (finding := check(run)) is not None]


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# --- the machine ----------------------------------------------------------------------------------------


def _competition(load: dict[str, Any] | None, when: str, rule_id: str) -> Finding | None:
    others, cores = _get(load, "others"), _get(load, "cores")
    if others is None or others < COMPETITION_WARN:
        return None
    return Finding(
        rule_id,
        "warning",
        f"other processes kept {others:.2f} of the {cores} bound core(s) busy {when}: they compete "
        "with the pipeline and inflate its timings; profile on a quiet machine or bind other cores.",
        {"others_cores": others, "threshold": COMPETITION_WARN},
    )


def _steal(load: dict[str, Any] | None, when: str, rule_id: str) -> Finding | None:
    steal = _get(load, "steal")
    if steal is None or steal < STEAL_WARN:
        return None
    return Finding(
        rule_id,
        "warning",
        f"the hypervisor took {steal:.2f} core(s) away from this VM {when} (steal time): timings include "
        "waiting for the host; compare runs side by side.",
        {"steal_cores": steal, "threshold": STEAL_WARN},
    )


@rule
def competition_during_setup(run: RunResult) -> Finding | None:
    return _competition(run.summary.get("setup_cpu"), "during set-up", "competition_during_setup")


@rule
def steal_during_setup(run: RunResult) -> Finding | None:
    return _steal(run.summary.get("setup_cpu"), "during set-up", "steal_during_setup")


@rule
def competition_during_run(run: RunResult) -> Finding | None:
    return _competition(run.summary.get("cpu"), "during the run", "competition_during_run")


@rule
def steal_during_run(run: RunResult) -> Finding | None:
    return _steal(run.summary.get("cpu"), "during the run", "steal_during_run")


# --- threads and cores ----------------------------------------------------------------------------------


@rule
def core_bind_ignored(run: RunResult) -> Finding | None:
    if not _get(run.summary, "threads", "bind_ignored"):
        return None
    return Finding(
        "core_bind_ignored", "warning", "--core-bind works on Linux only; the process was not bound."
    )


def _trial_kept_most_threads(trial: dict[str, Any] | None) -> bool:
    if not trial:
        return False
    return bool(trial["chosen"] == max(c["torch_threads"] for c in trial["candidates"]))


@rule
def oversubscribed(run: RunResult) -> Finding | None:
    """The threads doing the work waited for a CPU for a stated share of their ready time: oversubscription
    measured, not guessed from thread counts; never advice to drop threads a trial measured to be worth it."""
    wait = _get(run.summary, "cpu", "wait")
    if not wait or wait["wait_share"] < WAIT_SHARE_WARN or wait["run_s"] + wait["wait_s"] < 1.0:
        return None
    waiters = sorted(wait["by_thread"].items(), key=lambda item: -item[1].get("delay_s", 0.0))[:2]
    who = ", ".join(f"{name} waited {times['wait_s']:.1f} s" for name, times in waiters)
    measured = (
        f"the threads doing the work waited for a CPU {100 * wait['wait_share']:.0f}% of the time they were "
        f"ready to run ({who}), so stage times include waiting"
    )
    evidence = {"wait_share": wait["wait_share"], "threshold": WAIT_SHARE_WARN}
    others = _get(run.summary, "cpu", "others")
    if others is not None and others >= COMPETITION_WARN:
        message = f"{measured}: other processes kept {others:.2f} core(s) busy; profile on a quiet machine."
        return Finding("oversubscribed", "warning", message, {**evidence, "others_cores": others})
    threads = run.summary.get("threads") or {}
    if _trial_kept_most_threads(threads.get("trial")):
        return None  # fewer threads were tried and measured slower: the waiting is the cheaper cost
    cores = len(threads.get("cores") or []) or _get(run.summary, "cpu", "cores")
    return Finding(
        "oversubscribed",
        "warning",
        f"{measured}: {threads.get('torch')} torch and {threads.get('decode')} decode thread(s) plus "
        f"framescope's own outnumber the {cores} core(s); try fewer --torch-threads or --decode-threads.",
        evidence,
    )


@rule
def idle_cores(run: RunResult) -> Finding | None:
    """Bound cores left idle while the stage that set the pace could have used more threads (not when a
    trial measured the alternative)."""
    summary = run.summary
    threads = summary.get("threads") or {}
    ours, others = _get(summary, "cpu", "ours"), _get(summary, "cpu", "others")
    pace = summary.get("pace_stage")
    if pace is None or ours is None or others is None or threads.get("trial"):
        return None
    cores = len(threads.get("cores") or []) or _get(summary, "cpu", "cores") or 0
    idle = cores - ours - others
    if idle < IDLE_CORES_WARN:
        return None
    if pace == "exec_latency_ms" and threads.get("torch", cores) < cores:
        stage, have, flag = "the model (exec)", f"{threads['torch']} torch thread(s)", "torch_threads"
    elif pace == "decode_latency_ms" and threads.get("decode", cores) < cores:
        stage, have, flag = "decoding", f"{threads['decode']} decode thread(s)", "decode_threads"
    else:
        return None
    return Finding(
        "idle_cores",
        "warning",
        f"{stage} set the pace on {have} while {idle:.2f} of the {cores} bound core(s) sat idle; "
        f"--{flag.replace('_', '-')} {cores} may be faster.",
        {"idle_cores": idle, "threshold": IDLE_CORES_WARN, "pace_stage": pace},
        {flag: cores},
    )


@rule
def retrain_compile_on_cpu(run: RunResult) -> Finding | None:
    model = run.config.get("model") or {}
    if model.get("mode") != "retrain" or not model.get("compile") or model.get("on_gpu"):
        return None
    return Finding(
        "retrain_compile_on_cpu",
        "warning",
        "torch.compile of a training step on the CPU takes minutes to compile.",
    )


# --- the input ------------------------------------------------------------------------------------------


def shortfall_message(shortfall: dict[str, int], uri: str | None = None) -> str:
    """One line for an input that ended short of what its container announced, the same for every decoder."""
    skipped = shortfall.get("frames_skipped", 0)
    skipped_text = f", {skipped} undecodable packet(s) or file(s) skipped" if skipped else ""
    target = uri or "FILE"
    return (
        f"the input ended after {shortfall['frames_read']} of the {shortfall['frames_expected']} frames its "
        f"container announced{skipped_text}: the file may be damaged or truncated; check it with "
        f"ffmpeg -v error -i {target} -f null - (prints the damage), or try --decoder pyav, which skips "
        "damaged packets and reads on."
    )


@rule
def input_ended_early(run: RunResult) -> Finding | None:
    shortfall = run.summary.get("input_shortfall")
    if not shortfall:
        return None
    uri = _get(run.summary, "source", "uri")
    return Finding("input_ended_early", "warning", shortfall_message(shortfall, uri), dict(shortfall))


@rule
def frames_skipped(run: RunResult) -> Finding | None:
    skipped = run.summary.get("frames_skipped")
    if not skipped or run.summary.get("status") is None:
        return None
    return Finding(
        "frames_skipped",
        "warning",
        f"{skipped} undecodable packet(s) or file(s) were skipped in the input.",
        {"frames_skipped": skipped},
    )


# --- the profiler ---------------------------------------------------------------------------------------


@rule
def no_trace(run: RunResult) -> Finding | None:
    if run.summary.get("trace_error"):
        return Finding("no_trace", "warning", run.summary["trace_error"])
    profile = run.config.get("profile") or {}
    steps = run.summary.get("steps")
    if not profile.get("enabled") or run.summary.get("trace") or steps is None:
        return None
    return Finding(
        "no_trace",
        "warning",
        f"no torch.profiler trace: the window (wait {profile.get('wait')}, warm-up {profile.get('warmup')}, "
        f"active {profile.get('active')}) needs more than the {steps} step(s) the run had.",
        {"steps": steps},
    )
