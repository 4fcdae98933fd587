"""Console pieces shared by the tool commands."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn


def tool_progress(console: Console, label: str, *columns: ProgressColumn) -> Progress:
    """A transient progress bar labelled ``label``, drawn only on a terminal."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
