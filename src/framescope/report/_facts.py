"""The facts a report states about a run, as (label, text) rows: the console prints them and the HTML report
lays them out as tables, from the same functions, so the two never disagree."""

from __future__ import annotations

from typing import Any

from framescope.records import RunResult
from framescope.stages import Stage

TOTAL = "total_step_latency_ms"
STAGE_LABELS = (
    {stage.column: stage.value for stage in Stage.work()}
    | {Stage.QUEUE_WAIT.column: "queue wait"}
    | {TOTAL: "step total"}
)
"""CSV column -> the name a report shows."""

Rows = list[tuple[str, str]]


def stage_label(column: str) -> str:
    return STAGE_LABELS.get(column, column)


def _cores_text(cores: list[int] | None) -> str:
    if not cores:
        return "unknown"
    return f"{len(cores)} ({','.join(map(str, cores))})" if len(cores) <= 8 else f"{len(cores)}"


def system_rows(system: dict[str, Any]) -> Rows:
    """The machine a run ran on (``system.json``)."""
    rows = [("cpu", f"{system.get('cpu_model')} ({system.get('logical_cores')} logical cores)")]
    threads = system.get("threads") or {}
    if threads:
        bound = " bound" if threads.get("bound") else ""
        rows.append(
            (
                "cores used",
                f"{_cores_text(threads.get('cores'))}{bound}; torch threads {threads.get('torch_threads')}, "
                f"decode threads {threads.get('decode_threads')}",
            )
        )
    rows.append(
        (
            "memory",
            f"{system.get('memory_total_gib')} GiB ({system.get('memory_available_gib')} GiB available)",
        )
    )
    cuda = system.get("cuda_version") or "none"
    rows.append(
        ("torch", f"{system.get('torch')} (CUDA {cuda}, cuDNN {system.get('cudnn_version') or 'none'})")
    )
    for gpu in system.get("gpus") or []:
        rows.append(
            (
                f"gpu {gpu['index']}",
                f"{gpu['name']}, {gpu['memory_gib']} GiB, driver {system.get('nvidia_driver')}",
            )
        )
    if not system.get("gpus"):
        rows.append(("gpu", "none visible"))
    return rows


STAGE_HEADER = ("stage", "mean", "p50", "p95", "p99", "share")


def stage_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per-stage latency percentiles (ms) and each stage's share of the step, in the summary's order."""
    stages: dict[str, dict[str, float]] = summary.get("stages", {})
    total = stages.get(TOTAL, {}).get("mean_ms")
    rows: list[tuple[str, ...]] = []
    for column, stats in stages.items():
        share = f"{100 * stats['mean_ms'] / total:.0f}%" if total and column != TOTAL else ""
        rows.append(
            (
                stage_label(column),
                f"{stats['mean_ms']:.2f}",
                f"{stats['p50_ms']:.2f}",
                f"{stats['p95_ms']:.2f}",
                f"{stats['p99_ms']:.2f}",
                share,
            )
        )
    return rows


def pace_lines(s: dict[str, Any]) -> list[str]:
    """What set the pace, and how much the stages overlapped."""
    pace, ratio = s.get("pace_stage"), s.get("stage_sum_over_total")
    if not pace or not ratio:
        return []
    label = stage_label(pace)
    if s.get("pipeline") != "async":
        return [f"slowest stage: {label}; stages add up to {100 * ratio:.0f}% of the step wall time"]
    lines = [
        f"pace set by: {label}; stage work adds up to {ratio:.2f}x the wall time "
        f"({'stages overlapped' if ratio > 1.05 else 'little overlap'})"
    ]
    wait = s.get("stages", {}).get("queue_wait_ms", {}).get("mean_ms")
    total = s.get("stages", {}).get(TOTAL, {}).get("mean_ms")
    if wait is not None and total:
        lines.append(f"the model waited for its input {100 * wait / total:.0f}% of the time")
    return lines


def cpu_lines(cpu: dict[str, Any] | None) -> list[str]:
    """Who used the cores, and how long this process's threads waited for one."""
    if not cpu:
        return []
    if cpu.get("ours") is None:
        return ["cpu during the run: not measured (the run was shorter than the kernel's counters resolve)"]
    line = (
        f"cpu during the run: this process {cpu['ours']:.2f} of {cpu['cores']} core(s), other processes "
        f"{cpu['others']:.2f}, hypervisor steal {cpu['steal']:.2f}"
    )
    wait = cpu.get("wait")
    if wait:
        line += f"; threads waited for a CPU {100 * wait['wait_share']:.0f}% of the time they were ready"
    return [line]


def live_lines(live: dict[str, Any] | None) -> list[str]:
    """A live input's drops, reconnects, latency and on-time rate."""
    if not live:
        return []
    latency = ", ".join(f"{p} {live.get(f'latency_{p}_ms', 0):.0f} ms" for p in ("p50", "p90", "p99"))
    lines = [
        f"live input: {live['frames_dropped']} frame(s) dropped, {live['reconnects']} reconnect(s); "
        f"latency {latency}"
    ]
    if live.get("on_time_fps") is not None:
        lines.append(
            f"on time (result within {live['deadline_ms']:.0f} ms of the frame being due): "
            f"{live['on_time_fps']:.1f} FPS; {live['late_frames']} late frame(s)"
        )
    return lines


def run_rows(result: RunResult) -> Rows:
    """What ran: status, model, input, pipeline, timing."""
    s = result.summary
    rows = [("status", result.status + (f": {s['error']}" if s.get("error") else ""))]
    model = s.get("model") or {}
    if model:
        params = model.get("parameters")
        size = f", {params / 1e6:.1f} M parameters" if params else ""
        rows.append(("model", f"{model.get('name')} ({model.get('task')}{size}) on {model.get('device')}"))
    elif result.config.get("model"):
        rows.append(("model", str(result.config["model"].get("model_name"))))
    source = s.get("source") or {}
    if source:
        size = f"{source['width']}x{source['height']}" if source.get("width") else "?"
        fps = f", {source['fps']:.2f} fps" if source.get("fps") else ""
        live = ", live" if source.get("live") else ""
        rows.append(
            (
                "input",
                f"{source.get('uri')} ({source.get('kind')}{live}, {size}{fps}, {source.get('decoder')})",
            )
        )
    rows.append(("mode", f"{s.get('mode')}, {s.get('pipeline')} pipeline, batch size {s.get('batch_size')}"))
    rows.append(("timing", str(s.get("timing_method"))))
    if s.get("started_at"):
        rows.append(("started", f"{s['started_at']} (framescope {s.get('framescope_version')})"))
    return rows


def headline_rows(result: RunResult) -> Rows:
    """The summary's headline numbers: what :func:`~framescope.report.console.summary_lines` says, as rows."""
    s = result.summary
    rows: Rows = []
    if s.get("steps"):
        rows.append(("frames", f"{s['frames']} in {s['steps']} steps, {s['wall_time_s']:.2f} s"))
        rows.append(("average FPS", f"{s['avg_fps']:.1f}"))
        excluded = s.get("excluded_steps", {})
        left_out = ", ".join(f"{n} {k}" for k, n in excluded.items() if n)
        steady = f"{s['steady_fps']:.1f}" if s.get("steady_fps") else "n/a"
        rows.append(
            (
                "steady-state FPS",
                f"{steady} over {s['steady_steps']} steps" + (f" ({left_out} left out)" if left_out else ""),
            )
        )
        rows.extend(("pace", line) for line in pace_lines(s))
        if "loss" in s:
            rows.append(("loss", f"{s['loss']['first']:.4f} -> {s['loss']['last']:.4f}"))
    else:
        rows.append(("steps", "no steps were recorded"))
    rows.extend(("live", line) for line in live_lines(s.get("live")))
    rows.extend(("cpu", line) for line in cpu_lines(s.get("cpu")))
    rows.extend(("threads", note) for note in (s.get("threads") or {}).get("notes", []))
    if s.get("note"):
        rows.append(("note", str(s["note"])))
    rows.append(("run time", f"{s.get('run_time_s', 0):.1f} s including set-up"))
    if s.get("trace"):
        rows.append(("torch.profiler trace", str(result.run_dir / s["trace"])))
    rows.append(("run directory", str(result.run_dir)))
    return rows


SOURCE_HEADER = ("source", "frames", "dropped", "p50 ms", "p99 ms", "on-time FPS")


def source_row(label: str, entry: dict[str, Any]) -> list[str]:
    """One source's (or all sources') figures from ``summary.sources``, as :data:`SOURCE_HEADER` cells."""

    def ms(value: Any) -> str:
        return f"{value:.1f}" if isinstance(value, int | float) else "-"

    return [
        label,
        str(entry["frames"]),
        str(entry["dropped"]),
        ms(entry.get("latency_p50_ms")),
        ms(entry.get("latency_p99_ms")),
        ms(entry.get("on_time_fps")),
    ]
