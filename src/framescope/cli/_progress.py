"""Live console output of ``framescope run``: what is about to run, progress, warnings, the summary."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from framescope._observer import RunObserver, StartInfo
from framescope._secrets import redact, redact_value
from framescope.instrument.clock import Clock, monotonic
from framescope.records import Row, RunResult
from framescope.report.console import sources_table, summary_lines, summary_table, system_table
from framescope.stages import Stage

LOG_INTERVAL_S = 5.0
FPS_WINDOW_S = 2.0


LOG_WIDTH = 100
"""Where output that is not a terminal (a log file, CI) wraps."""
PATH_LINES = ("run directory:", "torch.profiler trace:", "report:")
"""Lines that end with a path: printed whole, whatever the width."""


def _settings(values: dict[str, Any]) -> str:
    return "  ".join(f"{key}={value}" for key, value in values.items())


def _flag_text(flag: str, value: Any, default: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag] if value else [f"{flag} off"] if default else []
    if isinstance(value, list | tuple):
        return [part for item in value for part in (flag, str(item))]
    return [flag, str(value)]


def changed_flags(config: Any) -> list[str]:
    """The settings of ``config`` that differ from the defaults, as the flags that set them (the input and
    model have lines of their own; the output directory is in the output line)."""
    from framescope.config import flat_settings

    resolved = redact_value(config.to_dict())
    words: list[str] = []
    for setting in flat_settings(type(config)):
        if setting.spec.flag is None or setting.name in ("model_name", "input_path", "output_dir"):
            continue
        value: Any = resolved
        for part in setting.path:
            value = value.get(part) if isinstance(value, dict) else None
        if setting.required or value == setting.default:
            continue
        words += _flag_text(setting.spec.flag, value, setting.default)
    return words


def brief_system_table(system: dict[str, Any]) -> Table:
    """The machine in three lines: CPU and memory, the cores and threads used, torch and the GPU."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row(
        "machine",
        f"{system.get('cpu_model')}, {system.get('logical_cores')} cores, {system.get('memory_total_gib')} "
        f"GiB ({system.get('memory_available_gib')} GiB available)",
    )
    threads = system.get("threads") or {}
    if threads:
        cores = threads.get("cores") or []
        shown = f"{len(cores)} core(s)" + (" bound" if threads.get("bound") else "")
        table.add_row(
            "threads",
            f"{shown}: torch {threads.get('torch_threads')}, decode {threads.get('decode_threads')}",
        )
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in system.get("gpus") or []) or "none"
    cuda = system.get("cuda_version")
    table.add_row("torch", f"{system.get('torch')}" + (f", CUDA {cuda}" if cuda else "") + f"; GPU: {gpus}")
    return table


def config_table(info: StartInfo, verbose: bool = False) -> Table:
    """What is about to run: the input and model as found, then the settings that differ from the defaults
    (``verbose``: every resolved setting, and how steps are timed)."""
    source = info.source
    table = Table(title="run", show_header=False, box=None, pad_edge=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    size = f"{source.width}x{source.height}" if source.width else "?"
    fps = f", {source.fps:.2f} fps" if source.fps else ""
    count = f", {source.frame_count} frames" if source.frame_count else ""
    table.add_row("input", f"{source.uri} ({source.kind}, {size}{fps}{count}, decoder {source.decoder})")
    for model in info.model.get("models") or [info.model]:  # several models per frame: one line each
        spec = model["input"]
        shape = f"{spec['size'][0]}x{spec['size'][1]}" if spec["size"] else f"shorter side {spec['resize']}"
        table.add_row(
            "model",
            f"{model['name']} ({model['task']}, {model['parameters'] / 1e6:.1f} M parameters, input {shape}) "
            f"on {model['device']}",
        )
    if verbose:
        table.add_row("timing", f"{info.timing_method} (see README: timing semantics)")
        resolved = redact_value(info.config.to_dict())
        for section in ("model", "source", "preprocess", "profile"):
            table.add_row(f"  {section}", _settings(resolved.pop(section)))
        table.add_row("  run", _settings(resolved))
    else:
        changed = changed_flags(info.config)
        table.add_row(
            "settings",
            (" ".join(changed) if changed else "the defaults")
            + " (every setting: --verbose, or the run's config.yaml)",
        )
    table.add_row("output", str(info.csv_path))
    return table


class ConsoleObserver(RunObserver):
    """Prints a run for people: a progress bar on a terminal, a log line every few seconds otherwise."""

    def __init__(
        self,
        mode: str = "auto",
        stream: TextIO | None = None,
        clock: Clock = monotonic,
        *,
        verbose: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.console = Console(file=self.stream, highlight=False)
        if not self.console.is_terminal:  # log files and CI output
            self.console = Console(file=self.stream, highlight=False, width=LOG_WIDTH)
        self.mode = ("bar" if self.console.is_terminal else "log") if mode == "auto" else mode
        self.clock = clock
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._recent: deque[tuple[float, int]] = deque()
        self._last_log = float("-inf")
        self._frames = 0
        self.warned: set[str] = set()

    def on_start(self, info: StartInfo) -> None:
        self.console.print(system_table(info.system) if self.verbose else brief_system_table(info.system))
        self.console.print(config_table(info, self.verbose))
        if self.mode == "bar":
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("profiling", total=info.expected_steps, fps="")

    def _live_fps(self, row: Row) -> float | None:
        now = row.step_start_s + row.total_step_latency_ms / 1000.0
        self._recent.append((now, row.frames))
        while len(self._recent) > 2 and now - self._recent[0][0] > FPS_WINDOW_S:
            self._recent.popleft()
        if len(self._recent) < 2:
            return row.fps
        span = now - self._recent[0][0]
        frames = sum(f for _, f in list(self._recent)[1:])
        return frames / span if span > 0 else None

    def on_step(self, row: Row) -> None:
        self._frames += row.frames
        fps = self._live_fps(row)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, fps=f"{fps:.1f} FPS" if fps else "")
        elif self.mode == "log":
            now = self.clock()
            if now - self._last_log >= LOG_INTERVAL_S:
                self._last_log = now
                stages = "  ".join(
                    f"{stage} {ms:.1f} ms"
                    for stage in Stage.work()
                    if (ms := row.stage_ms(stage)) is not None
                )
                self.console.print(
                    f"step {row.step}: {self._frames} frames, {fps or 0:.1f} FPS; {stages}", markup=False
                )

    def on_finish(self, result: RunResult) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        status = result.status
        colour = {"complete": "green", "interrupted": "yellow"}.get(status, "red")
        self.console.print(f"[bold {colour}]run {status}[/]")
        if result.summary.get("stages"):
            self.console.print(summary_table(result.summary))
        if (per_source := sources_table(result.summary)) is not None:
            self.console.print(per_source)
        if result.summary.get("models"):
            from framescope.report.multi_text import frame_line, models_table

            self.console.print(models_table(result.summary))
            self.console.print(frame_line(result.summary), markup=False)
        for line in summary_lines(result):
            if line:  # a path is never broken across lines (it is copied into the next command)
                self.console.print(line, markup=False, soft_wrap=line.startswith(PATH_LINES))
        self._print_findings(result)

    TOP_FINDINGS = 3

    def on_warning(self, message: str) -> None:
        self.warned.add(message)
        self.console.print(f"[yellow]warning:[/] {escape(redact(message))}")

    def _print_findings(self, result: RunResult) -> None:
        """The top findings not told yet, one line each with the fix as flags; where the rest are."""
        from framescope.cli._diagnose_cmd import finding_lines, ordered

        findings = [
            f for f in ordered(result.summary.get("findings") or []) if f["message"] not in self.warned
        ]
        if not findings:
            return
        self.console.print("[bold]findings[/]")
        for line in finding_lines(findings, limit=self.TOP_FINDINGS):
            self.console.print(f"  {redact(line)}", markup=False)
        more = len(findings) - self.TOP_FINDINGS
        hint = f"{more} more; " if more > 0 else ""
        self.console.print(
            f"  ({hint}framescope diagnose {result.run_dir} shows each with its evidence; add --measure to "
            "measure the fixes, or run with --tune)",
            markup=False,
        )
