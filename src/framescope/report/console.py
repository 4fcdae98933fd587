"""Console rendering of a finished run: the machine, per-stage statistics and the headline numbers."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from framescope.records import RunResult
from framescope.stages import Stage

STAGE_LABELS = (
    {stage.column: stage.value for stage in Stage.work()}
    | {"queue_wait_ms": "queue wait"}
    | {"total_step_latency_ms": "step total"}
)


def _cores_text(cores: list[int] | None) -> str:
    if not cores:
        return "unknown"
    return f"{len(cores)} ({','.join(map(str, cores))})" if len(cores) <= 8 else f"{len(cores)}"


def system_table(system: dict[str, Any]) -> Table:
    """The machine a run ran on (``system.json``)."""
    table = Table(title="system", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("cpu", f"{system.get('cpu_model')} ({system.get('logical_cores')} logical cores)")
    threads = system.get("threads") or {}
    if threads:
        table.add_row(
            "cores used",
            f"{_cores_text(threads.get('cores'))}{' bound' if threads.get('bound') else ''}; torch threads "
            f"{threads.get('torch_threads')}, decode threads {threads.get('decode_threads')}",
        )
    table.add_row(
        "memory", f"{system.get('memory_total_gib')} GiB ({system.get('memory_available_gib')} GiB available)"
    )
    cuda = system.get("cuda_version") or "none"
    table.add_row(
        "torch", f"{system.get('torch')} (CUDA {cuda}, cuDNN {system.get('cudnn_version') or 'none'})"
    )
    for gpu in system.get("gpus") or []:
        table.add_row(
            f"gpu {gpu['index']}",
            f"{gpu['name']}, {gpu['memory_gib']} GiB, driver {system.get('nvidia_driver')}",
        )
    if not system.get("gpus"):
        table.add_row("gpu", "none visible")
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """Per-stage latency percentiles and each stage's share of the step."""
    table = Table(title="per-batch latency, steady state (ms)")
    for name in ("stage", "mean", "p50", "p95", "p99", "share"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    stages: dict[str, dict[str, float]] = summary.get("stages", {})
    total = stages.get("total_step_latency_ms", {}).get("mean_ms")
    for column, stats in stages.items():
        share = (
            f"{100 * stats['mean_ms'] / total:.0f}%" if total and column != "total_step_latency_ms" else ""
        )
        table.add_row(
            STAGE_LABELS.get(column, column),
            f"{stats['mean_ms']:.2f}",
            f"{stats['p50_ms']:.2f}",
            f"{stats['p95_ms']:.2f}",
            f"{stats['p99_ms']:.2f}",
            share,
        )
    return table


def _pace_lines(s: dict[str, Any]) -> list[str]:
    """What set the pace, and how much the stages overlapped."""
    pace, ratio = s.get("pace_stage"), s.get("stage_sum_over_total")
    if not pace or not ratio:
        return []
    label = STAGE_LABELS.get(pace, pace)
    if s.get("pipeline") != "async":
        return [f"slowest stage: {label}; stages add up to {100 * ratio:.0f}% of the step wall time"]
    lines = [
        f"pace set by: {label}; stage work adds up to {ratio:.2f}x the wall time "
        f"({'stages overlapped' if ratio > 1.05 else 'little overlap'})"
    ]
    wait = s.get("stages", {}).get("queue_wait_ms", {}).get("mean_ms")
    total = s.get("stages", {}).get("total_step_latency_ms", {}).get("mean_ms")
    if wait is not None and total:
        lines.append(f"the model waited for its input {100 * wait / total:.0f}% of the time")
    return lines


def _cpu_lines(cpu: dict[str, Any] | None) -> list[str]:
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


def summary_lines(result: RunResult) -> list[str]:
    """The summary's headline numbers as sentences."""
    s = result.summary
    lines = []
    if s.get("steps"):
        lines.append(
            f"{s['frames']} frames in {s['steps']} steps, {s['wall_time_s']:.2f} s: "
            f"average {s['avg_fps']:.1f} FPS"
        )
        excluded = s.get("excluded_steps", {})
        left_out = ", ".join(f"{n} {k}" for k, n in excluded.items() if n)
        steady = f"{s['steady_fps']:.1f} FPS" if s.get("steady_fps") else "n/a"
        lines.append(
            f"steady state: {steady} over {s['steady_steps']} steps"
            + (f" ({left_out} step(s) left out)" if left_out else "")
        )
        lines.extend(_pace_lines(s))
        if "loss" in s:
            lines.append(f"loss: {s['loss']['first']:.4f} -> {s['loss']['last']:.4f}")
    else:
        lines.append("no steps were recorded")
    live = s.get("live")
    if live:
        latency = ", ".join(f"{p} {live.get(f'latency_{p}_ms', 0):.0f} ms" for p in ("p50", "p90", "p99"))
        lines.append(
            f"live input: {live['frames_dropped']} frame(s) dropped, {live['reconnects']} reconnect(s); "
            f"latency {latency}"
        )
        if live.get("on_time_fps") is not None:
            lines.append(
                f"on time (result within {live['deadline_ms']:.0f} ms of the frame being due): "
                f"{live['on_time_fps']:.1f} FPS; {live['late_frames']} late frame(s)"
            )
    lines.extend(_cpu_lines(s.get("cpu")))
    lines.extend((s.get("threads") or {}).get("notes", []))
    lines.append(
        f"timing: {s.get('timing_method')}; run time {s.get('run_time_s', 0):.1f} s including set-up"
    )
    if s.get("trace"):
        lines.append(f"torch.profiler trace: {result.run_dir / s['trace']}")
    lines.append(f"run directory: {result.run_dir}")
    return lines
