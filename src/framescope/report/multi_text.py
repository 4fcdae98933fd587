"""Console tables of several models per frame: each model's figures in a run; strategies side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _ratio(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, int | float) else "-"


def models_table(summary: dict[str, Any]) -> Table:
    """Per model: its own rate, exec percentiles, its step alone and alongside the others, interference."""
    strategy = summary.get("multi_model") or "?"
    table = Table(title=f"models, steady state ({strategy}; work: each model's own start to results, ms)")
    for name in ("model", "FPS", "exec p50", "exec p99", "solo work", "together work", "interference"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for name, model in (summary.get("models") or {}).items():
        fps = model.get("steady_fps")
        exec_stats = model.get("exec") or {}
        table.add_row(
            name,
            f"{fps:.1f}" if fps else "-",
            _ms(exec_stats.get("p50_ms")),
            _ms(exec_stats.get("p99_ms")),
            _ms(model.get("solo_step_ms")),
            _ms(model.get("together_step_ms")),
            _ratio(model.get("interference")),
        )
    return table


def frame_line(summary: dict[str, Any]) -> str:
    """The frame-level rate: frames whose every model had finished, per second."""
    fps = summary.get("steady_fps")
    total = (summary.get("stages") or {}).get("total_step_latency_ms") or {}
    rate = f"{fps:.1f} FPS" if fps else "n/a"
    return (
        f"every model, every frame ({summary.get('multi_model')}): {rate}; a batch until all models finished "
        f"p50 {_ms(total.get('p50_ms'))} ms, p99 {_ms(total.get('p99_ms'))} ms"
    )


def strategies_table(results: Sequence[tuple[str, dict[str, Any] | None, str | None]]) -> Table:
    """``--multi-model all``: (strategy, its summary or None, its error) side by side; the rate relative to
    serial's, and each model's interference."""
    names: list[str] = []
    for _, summary, _ in results:
        for name in (summary or {}).get("models") or {}:
            if name not in names:
                names.append(name)
    serial = next((s.get("steady_fps") for n, s, _ in results if n == "serial" and s), None)
    table = Table(title="strategies side by side (combined: frames every model finished, per second)")
    for column in ("strategy", "combined FPS", "vs serial", "batch p50 ms"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name in names:
        table.add_column(f"{name} work p50 / interference", justify="right")
    for strategy, summary, _error in results:
        if summary is None or summary.get("status") != "complete":
            table.add_row(strategy, "failed", "", "", *[""] * len(names))
            continue
        fps = summary.get("steady_fps")
        total = (summary.get("stages") or {}).get("total_step_latency_ms") or {}
        models = summary.get("models") or {}
        cells = [
            f"{_ms(models[n].get('together_step_ms'))} / {_ratio(models[n].get('interference'))}"
            if n in models
            else ""
            for n in names
        ]
        table.add_row(
            strategy,
            f"{fps:.1f}" if fps else "-",
            _ratio(fps / serial) if fps and serial else "-",
            _ms(total.get("p50_ms")),
            *cells,
        )
    return table
