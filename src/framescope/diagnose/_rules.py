"""The rules. Each reads the run record and returns a finding, or None when its situation did not arise (or
the record does not have what it needs yet: the same rules run on a starting run's record, after set-up, and
on the finished one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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
    evidence = {"others_cores": others, "threshold": COMPETITION_WARN}
    wait = _get(load, "wait")
    cost = ""
    if wait and wait.get("wait_share", 0) >= WAIT_SHARE_WARN:
        cost = (
            f" (the pipeline's threads waited for a CPU {100 * wait['wait_share']:.0f}% of the time they "
            "were ready to run)"
        )
        evidence["wait_share"] = wait["wait_share"]
    return Finding(
        rule_id,
        "warning",
        f"other processes kept {others:.2f} of the {cores} bound core(s) busy {when}: they compete "
        f"with the pipeline and inflate its timings{cost}; profile on a quiet machine or bind other cores.",
        evidence,
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
    measured, not guessed from thread counts; never advice to drop threads a trial measured to be worth it,
    nor when other processes did the crowding (that is competition, told by its own rule)."""
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
        return None  # other processes caused the waiting: competition_during_run says so, with this share
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


# --- where the time goes: the input side against the model ---------------------------------------------

INPUT_BOUND_SHARE = 0.20
"""Async: the model waiting for its input this share of its steps' time means the input sets the pace."""
DECODE_SHARE = 0.10
"""Decoding (with reading) taking this share of a step is worth shrinking."""
FULL_SIZE_FACTOR = 1.5
"""Frames with this many times the pixels preprocessing keeps are decoded larger than needed."""
OVERLAP_GAIN = 1.2
"""Sync: overlapping the input side with the model would gain at least this factor, by the stage times."""

_PRODUCER = ("read_latency_ms", "decode_latency_ms", "h2d_latency_ms", "prep_latency_ms")
_MODEL = ("exec_latency_ms", "post_latency_ms", "d2h_latency_ms", "split_transfer_latency_ms")


def _mean_ms(summary: dict[str, Any], column: str) -> float:
    value = _get(summary, "stages", column, "mean_ms")
    return float(value) if value is not None else 0.0


def _sides(summary: dict[str, Any]) -> tuple[float, float, float]:
    """(input side, model side, step total) in mean milliseconds per batch."""
    producer = sum(_mean_ms(summary, c) for c in _PRODUCER)
    model = sum(_mean_ms(summary, c) for c in _MODEL)
    return producer, model, _mean_ms(summary, "total_step_latency_ms")


def _decode_fix(run: RunResult) -> dict[str, Any]:
    """The flags that shrink frames while decoding: OpenCV cannot, so PyAV with the resize."""
    decoder = _get(run.config, "source", "decoder") or _get(run.summary, "source", "decoder")
    return {"decoder": "pyav", "decode_size": "auto"} if decoder == "opencv" else {"decode_size": "auto"}


def _kept_pixels(summary: dict[str, Any]) -> int | None:
    """Pixels per frame the preprocessing keeps after its first resize: the model's fixed input, or its
    reference resize's shorter side squared (aspect ratios vary; this errs small)."""
    spec = _get(summary, "model", "input") or {}
    if spec.get("size"):
        height, width = spec["size"]
        resize = spec.get("resize") or min(height, width)
        return int(max(height, resize) * max(width, resize))
    resize = spec.get("resize")
    return int(resize * resize) if resize else None


@rule
def decode_full_size(run: RunResult) -> Finding | None:
    """Full-size frames are decoded and converted, then preprocessing shrinks them: decode to the size it
    keeps instead (``--decode-size auto``; OpenCV cannot, PyAV's swscale can)."""
    summary = run.summary
    source = summary.get("source") or {}
    if summary.get("decode_size") or source.get("live") or not source.get("width"):
        return None
    if source.get("kind") not in ("file", "stream", "camera"):
        return None
    kept = _kept_pixels(summary)
    frame = int(source["width"]) * int(source["height"])
    _, _, total = _sides(summary)
    decode = _mean_ms(summary, "decode_latency_ms") + _mean_ms(summary, "read_latency_ms")
    if not kept or frame < FULL_SIZE_FACTOR * kept or not total or decode / total < DECODE_SHARE:
        return None
    fix = _decode_fix(run)
    return Finding(
        "decode_full_size",
        "warning",
        f"frames are decoded at {source['width']}x{source['height']} and preprocessing then shrinks them to "
        f"about {kept / frame:.0%} of the pixels; reading and decoding take {decode / total:.0%} of a step: "
        "decode straight to the size kept instead.",
        {
            "frame_pixels": frame,
            "kept_pixels": kept,
            "decode_share": decode / total,
            "threshold": DECODE_SHARE,
        },
        fix,
    )


def _live_keeps_up(summary: dict[str, Any]) -> bool:
    """A live input processed at its own rate: waiting for its frames is the camera setting the pace, as it
    should, not a bottleneck."""
    fps_in, fps_out = _get(summary, "source", "fps"), summary.get("steady_fps")
    live = summary.get("live") or _get(summary, "source", "live")
    return bool(live and fps_in and fps_out and fps_out >= 0.95 * fps_in)


@rule
def input_bound(run: RunResult) -> Finding | None:
    """The input side sets the pace: the model waits for its input (async), or reading, decoding and
    preprocessing take longer than the model (sync). Not for a live input that keeps up."""
    summary = run.summary
    producer, model, total = _sides(summary)
    if not total or not model or _live_keeps_up(summary):
        return None
    if summary.get("pipeline") == "async":
        wait = _mean_ms(summary, "queue_wait_ms")
        if wait / total < INPUT_BOUND_SHARE:
            return None
        message = (
            f"the model waited for its input {wait / total:.0%} of the time: reading, decoding and "
            f"preprocessing ({producer:.0f} ms a batch) set the pace, not the model ({model:.0f} ms)"
        )
        evidence = {"queue_wait_share": wait / total, "threshold": INPUT_BOUND_SHARE}
    else:
        if producer < model:
            return None
        message = (
            f"reading, decoding and preprocessing take {producer:.0f} ms a batch, the model {model:.0f} ms: "
            "the input side sets the pace"
        )
        evidence = {"input_ms": producer, "model_ms": model}
    fix = decode_full_size(run)
    overrides: dict[str, Any] = dict(fix.overrides) if fix is not None else {}
    hint = "; shrink the frames while decoding" if overrides else ""
    threads = summary.get("threads") or {}
    cores = len(threads.get("cores") or [])
    if (
        not overrides
        and summary.get("pace_stage") == "decode_latency_ms"
        and 0 < threads.get("decode", cores) < cores
    ):
        # Decoding alone sets the pace on fewer threads than cores: FFmpeg's frame threads may take the slack.
        overrides = {"decode_threads": cores}
        hint = f"; decoding sets the pace on {threads['decode']} thread(s): --decode-threads {cores} may help"
    return Finding("input_bound", "warning", message + hint + ".", evidence, overrides)


@rule
def overlap_would_pay(run: RunResult) -> Finding | None:
    """Sync: the input side and the model take turns; run side by side (``--pipeline async``) a step would
    take about as long as the slower of the two."""
    summary = run.summary
    if summary.get("pipeline") != "sync" or _live_keeps_up(summary):
        return None
    producer, model, _ = _sides(summary)
    if not producer or not model:
        return None
    gain = (producer + model) / max(producer, model)
    if gain < OVERLAP_GAIN:
        return None
    return Finding(
        "overlap_would_pay",
        "warning",
        f"the input side ({producer:.0f} ms a batch) and the model ({model:.0f} ms) take turns; run side by "
        f"side they could take up to {gain:.2f}x less time per batch: --pipeline async.",
        {"input_ms": producer, "model_ms": model, "estimated_gain": gain, "threshold": OVERLAP_GAIN},
        {"pipeline": "async"},
    )


# --- the process's allocator --------------------------------------------------------------------------

KERNEL_SHARE_WARN = 0.10
"""The kernel's share of the process's CPU time above which its page faults are worth a finding."""
FAULTS_PER_STEP_WARN = 1000
"""Page faults a step (4 MB of pages mapped afresh) below which the kernel's time is not the allocator's."""


@rule
def allocator_page_faults(run: RunResult) -> Finding | None:
    """glibc's malloc mapping the step's large buffers afresh every step (see :mod:`framescope._malloc`):
    the kernel's share of the process's CPU time and the page faults a step, both measured."""
    summary = run.summary
    kernel, faults = _get(summary, "cpu", "kernel_share"), _get(summary, "cpu", "minor_faults")
    steps = summary.get("steps") or 0
    malloc = summary.get("malloc") or {}
    if kernel is None or faults is None or not steps or malloc.get("in_effect") != "default":
        return None
    per_step = faults / steps
    if kernel < KERNEL_SHARE_WARN or per_step < FAULTS_PER_STEP_WARN:
        return None
    return Finding(
        "allocator_page_faults",
        "warning",
        f"the kernel took {100 * kernel:.0f}% of this process's CPU time, serving {per_step:,.0f} page "
        "faults a step: the C allocator (glibc malloc) maps the step's large buffers afresh and unmaps "
        "them when freed, and how often it does depends on the process (runs of one job land 20-40% "
        "apart); keep freed memory for reuse instead.",
        {
            "kernel_share": kernel,
            "faults_per_step": per_step,
            "kernel_share_threshold": KERNEL_SHARE_WARN,
            "faults_per_step_threshold": FAULTS_PER_STEP_WARN,
        },
        {"malloc": "retain"},
    )


# --- the GPU ------------------------------------------------------------------------------------------

PREP_SHARE = 0.15
POST_SHARE = 0.10
SMALL_BATCH = 4


def _model_on_gpu(run: RunResult) -> bool:
    return bool(_get(run.config, "model", "on_gpu")) or str(_get(run.summary, "model", "device")).startswith(
        "cuda"
    )


@rule
def prep_on_cpu_for_gpu(run: RunResult) -> Finding | None:
    if not _model_on_gpu(run) or _get(run.config, "preprocess", "on_gpu"):
        return None
    _, _, total = _sides(run.summary)
    prep = _mean_ms(run.summary, "prep_latency_ms")
    if not total or prep / total < PREP_SHARE:
        return None
    return Finding(
        "prep_on_cpu_for_gpu",
        "warning",
        f"preprocessing runs on the CPU ({prep / total:.0%} of a step) and feeds a model on the GPU: copy "
        "the uint8 frames and preprocess there (--prep-on-gpu), a quarter of the bytes to copy.",
        {"prep_share": prep / total, "threshold": PREP_SHARE},
        {"prep_on_gpu": True},
    )


@rule
def detections_copied_raw(run: RunResult) -> Finding | None:
    if _get(run.summary, "model", "task") != "detection" or not _model_on_gpu(run):
        return None
    if _get(run.config, "postprocess", "on_gpu"):
        return None
    _, _, total = _sides(run.summary)
    cost = _mean_ms(run.summary, "d2h_latency_ms") + _mean_ms(run.summary, "post_latency_ms")
    if not total or cost / total < POST_SHARE:
        return None
    return Finding(
        "detections_copied_raw",
        "warning",
        f"the detector's raw outputs are copied to the CPU and post-processed there ({cost / total:.0%} of a "
        "step): NMS on the GPU and copy back only the kept boxes (--post-on-gpu).",
        {"copy_and_post_share": cost / total, "threshold": POST_SHARE},
        {"post_on_gpu": True},
    )


@rule
def gpu_small_batch(run: RunResult) -> Finding | None:
    batch = run.summary.get("batch_size") or _get(run.config, "batch_size")
    if not _model_on_gpu(run) or not batch or batch > SMALL_BATCH or _get(run.summary, "source", "live"):
        return None
    return Finding(
        "gpu_small_batch",
        "info",
        f"batches of {batch} leave a GPU mostly waiting on kernel launches; larger batches usually raise "
        "throughput (at the cost of latency): measure --batch-size 16.",
        {"batch_size": batch},
        {"batch_size": 16},
    )


@rule
def gpu_without_amp(run: RunResult) -> Finding | None:
    if not _model_on_gpu(run) or _get(run.config, "model", "amp"):
        return None
    return Finding(
        "gpu_without_amp",
        "info",
        "the model runs in float32 on the GPU; float16 autocast (--use-amp) uses its tensor cores.",
        {},
        {"use_amp": True},
    )


@rule
def gpu_without_compile(run: RunResult) -> Finding | None:
    if not _model_on_gpu(run) or _get(run.config, "model", "compile"):
        return None
    return Finding(
        "gpu_without_compile",
        "info",
        "the model runs eagerly on the GPU; torch.compile (--enable-compile) fuses kernels, fewer launches.",
        {},
        {"enable_compile": True},
    )


# --- live inputs --------------------------------------------------------------------------------------

DROP_SHARE = 0.01
QUEUEING_FACTOR = 2.0


def _stage_speedups(summary: dict[str, Any], excess_ms: float) -> dict[str, float | None]:
    """For each stage on the side that sets the pace, how many times faster it alone would have to get to
    take ``excess_ms`` off a step (None: it is too small to close the gap on its own). Async runs the input
    side and the model side at once, so only the slower side's stages count."""
    producer, model, _ = _sides(summary)
    columns: tuple[str, ...] = _PRODUCER + _MODEL
    if summary.get("pipeline") == "async":
        columns = _PRODUCER if producer > model else _MODEL
    needed: dict[str, float | None] = {}
    for column in columns:
        mean = _mean_ms(summary, column)
        if mean > 0:
            factor = mean / (mean - excess_ms) if mean > excess_ms else None
            needed[column.removesuffix("_latency_ms")] = factor
    return dict(sorted(needed.items(), key=lambda item: (item[1] is None, item[1] or 0.0)))


@rule
def live_falls_behind(run: RunResult) -> Finding | None:
    """A live input delivers frames faster than the pipeline processes them: how much faster the pipeline,
    and each stage on its own, must get to keep up."""
    summary = run.summary
    live, source = summary.get("live"), summary.get("source") or {}
    fps_in, fps_out = source.get("fps"), summary.get("steady_fps")
    if not live or not fps_in or not fps_out:
        return None
    frames = (summary.get("steady_frames") or 0) + live.get("frames_dropped", 0)
    dropped = live.get("frames_dropped", 0) / frames if frames else 0.0
    if dropped < DROP_SHARE and fps_out >= 0.95 * fps_in:
        return None
    needed = fps_in / fps_out if fps_out < fps_in else 1.0 / max(1e-9, 1 - dropped)
    batch = summary.get("batch_size") or 1
    budget_ms, step_ms = 1000.0 * batch / fps_in, 1000.0 * batch / fps_out
    stages = _stage_speedups(summary, step_ms - budget_ms) if step_ms > budget_ms else {}
    told = [f"{name} {factor:.2f}x" for name, factor in stages.items() if factor is not None][:2]
    if told:
        per_stage = f"; on its own, {' or '.join(told)} faster would do it"
    elif stages:
        per_stage = "; no single stage can close the gap on its own"
    else:
        per_stage = ""
    return Finding(
        "live_falls_behind",
        "warning",
        f"the input delivers {fps_in:.1f} FPS, the pipeline processed {fps_out:.1f} and dropped "
        f"{dropped:.0%} of the frames: a batch of {batch} arrives every {budget_ms:.1f} ms and a step takes "
        f"{step_ms:.1f} ms, so it must get {needed:.2f}x faster to keep up{per_stage}.",
        {
            "source_fps": fps_in,
            "steady_fps": fps_out,
            "dropped_share": dropped,
            "needed_speedup": needed,
            "budget_ms": budget_ms,
            "step_ms": step_ms,
            "stage_speedups": stages,
            "threshold": DROP_SHARE,
        },
    )


@rule
def live_latency_is_queueing(run: RunResult) -> Finding | None:
    """Frames wait in the live buffer and the prefetch queue rather than being processed."""
    summary = run.summary
    live = summary.get("live") or {}
    latency, step = live.get("latency_p50_ms"), _get(summary, "stages", "total_step_latency_ms", "p50_ms")
    if latency is None or not step or latency < QUEUEING_FACTOR * step:
        return None
    overrides: dict[str, Any] = {}
    if _get(run.config, "source", "live_buffer"):  # a buffer worked through in order: newest-first instead
        overrides["live_buffer"] = 0
    if summary.get("pipeline") == "async" and (_get(run.config, "prefetch") or 2) > 1:
        overrides["prefetch"] = 1
    if not overrides:
        return None  # newest frames first already, nothing prefetched ahead: the step itself is the latency
    fixes = []
    if "live_buffer" in overrides:
        fixes.append("take the newest frames, not the buffer in order (--live-buffer 0)")
    if "prefetch" in overrides:
        fixes.append("prefetch one batch, not several (--prefetch 1)")
    return Finding(
        "live_latency_is_queueing",
        "warning",
        f"frames were {latency:.0f} ms old at p50 though a step takes {step:.0f} ms: most of their latency "
        f"is waiting in the live buffer{' and the prefetch queue' if 'prefetch' in overrides else ''}; "
        f"{' and '.join(fixes)}.",
        {"latency_p50_ms": latency, "step_p50_ms": step, "threshold_factor": QUEUEING_FACTOR},
        overrides,
    )


# --- whether the numbers can be trusted ---------------------------------------------------------------

UNSTABLE_SPREAD = 0.10
TREND_SHARE = 0.15


def _steady_rates(run: RunResult) -> Any:
    from framescope.records import steady_rows

    rows = run.rows
    if rows is None or rows.empty or "warmup" not in rows:
        return None
    steady = steady_rows(rows)
    return steady["frames"].astype(float) / (steady["total_step_latency_ms"].astype(float) / 1000.0)


MIN_STEPS_TO_JUDGE = 30
"""Fewer steady steps than this say too little about the run's own stability to judge it."""


@rule
def unstable_rate(run: RunResult) -> Finding | None:
    """The thirds of the steady state disagree, by more than 10 % and by more than the step-to-step noise
    can explain (twice the noise floor of the steps within a third): one number for this run would mislead."""
    from framescope.stats import noise_floor, window_medians

    rates = _steady_rates(run)
    if rates is None or len(rates) < MIN_STEPS_TO_JUDGE:
        return None
    values = list(rates)
    window = len(values) // 3
    medians = window_medians(values, window)
    spread = max(medians) / min(medians) - 1 if min(medians) > 0 else 0.0
    # The noise is measured within each third, where the rate held: across the whole run a real shift
    # would pass for noise and hide itself.
    floor = float(np.median([noise_floor(values[i * window : (i + 1) * window]) for i in range(3)]))
    if spread <= max(UNSTABLE_SPREAD, 2 * floor):
        return None
    return Finding(
        "unstable_rate",
        "warning",
        f"the steady-state rate moved by {spread:.0%} between parts of the run (window medians "
        f"{min(medians):.1f} to {max(medians):.1f} FPS): compare runs side by side, or run longer.",
        {"spread": spread, "threshold": max(UNSTABLE_SPREAD, 2 * floor), "window_medians_fps": medians},
    )


@rule
def trend(run: RunResult) -> Finding | None:
    """The step rate drifted over the run: a warm-up too short, or the machine slowing (heat, memory)."""
    rates = _steady_rates(run)
    if rates is None or len(rates) < MIN_STEPS_TO_JUDGE:
        return None
    values = list(rates)
    tenth = max(3, len(values) // 10)
    head, rest = float(np.median(values[:tenth])), float(np.median(values[tenth:]))
    slowest_usual = float(np.percentile(values[tenth:], 10))
    if rest > 0 and head < (1 - TREND_SHARE) * rest and head < slowest_usual:
        warmup = int(_get(run.config, "warmup_steps") or 0)
        # The slow start ends after the last of the early steps that ran slower than the rest allow.
        early = values[: 2 * tenth]
        slow = [i for i, value in enumerate(early) if value < (1 - TREND_SHARE) * rest]
        extra = slow[-1] + 1 if slow else tenth
        return Finding(
            "warm_up_too_short",
            "warning",
            f"the first {extra} steady steps ran at {float(np.median(values[:extra])):.1f} FPS against "
            f"{rest:.1f} for the rest: the warm-up was too short; --warmup-steps {warmup + extra} keeps "
            "them out of the summary.",
            {"first_fps": head, "rest_fps": rest, "slow_steps": extra, "threshold": TREND_SHARE},
            {"warmup_steps": warmup + extra},
        )
    slope = np.polyfit(np.arange(len(values)), values, 1)[0] * len(values)
    median_rate = float(np.median(values))
    if median_rate > 0 and slope / median_rate < -TREND_SHARE:
        return Finding(
            "rate_drifts_down",
            "warning",
            f"the rate fell by about {-slope / median_rate:.0%} over the run (heat, memory growth, or "
            "another process starting): the median hides it.",
            {"drift_share": slope / median_rate, "threshold": TREND_SHARE},
        )
    return None


@rule
def percentiles_on_few_steps(run: RunResult) -> Finding | None:
    """p99 over a few dozen steps is the largest step or two; say how many steps it would need."""
    from framescope.stats import samples_for_percentile

    steps = run.summary.get("steady_steps")
    needed = samples_for_percentile(99)
    if not steps or steps >= needed:
        return None
    return Finding(
        "percentiles_on_few_steps",
        "info",
        f"p99 over {steps} steady steps rests on the slowest {max(1, steps // 100)} step(s); run at least "
        f"{needed} steps for it to rest on ten.",
        {"steady_steps": steps, "needed": needed},
    )
