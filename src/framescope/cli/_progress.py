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


def _settings(values: dict[str, Any]) -> str:
    return "  ".join(f"{key}={value}" for key, value in values.items())


def config_table(info: StartInfo) -> Table:
    """What is about to run: the input and model as found, then every resolved setting."""
    source = info.source
    table = Table(title="run", show_header=False, box=None, pad_edge=False)
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
    table.add_row("timing", f"{info.timing_method} (see README: timing semantics)")
    resolved = redact_value(info.config.to_dict())
    for section in ("model", "source", "preprocess", "profile"):
        table.add_row(f"  {section}", _settings(resolved.pop(section)))
    table.add_row("  run", _settings(resolved))
    table.add_row("output", str(info.csv_path))
    return table


class ConsoleObserver(RunObserver):
    """Prints a run for people: a progress bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, clock: Clock = monotonic) -> None:
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, highlight=False)
        if not self.console.is_terminal:
            # log files and CI output: wide enough that paths and settings do not wrap mid-word
            self.console = Console(file=self.stream, highlight=False, width=160)
        self.mode = ("bar" if self.console.is_terminal else "log") if mode == "auto" else mode
        self.clock = clock
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._recent: deque[tuple[float, int]] = deque()
        self._last_log = float("-inf")
        self._frames = 0
        self.warned: set[str] = set()

    def on_start(self, info: StartInfo) -> None:
        self.console.print(system_table(info.system))
        self.console.print(config_table(info))
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
            if line:
                self.console.print(line, markup=False)
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
