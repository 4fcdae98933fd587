"""Sweeps: one job measured over a grid (or one factor at a time) of run settings, each point an ordinary run
directory, with sweep.csv, sweep.json and the verdicts (best, best under a p99 budget, the knee)."""

from framescope.sweep._points import SEARCHES, SWEEPABLE, Point, expand, parse_list, point_configs
from framescope.sweep._sweep import (
    POINTS_DIR,
    SWEEP_CSV,
    SWEEP_JSON,
    SWEEP_YAML,
    Sweep,
    free_memory,
    is_sweep_dir,
    load_sweep,
)
from framescope.sweep._table import KNEE_METHOD, STATUSES, columns, point_row, verdicts

__all__ = [
    "KNEE_METHOD",
    "POINTS_DIR",
    "SEARCHES",
    "STATUSES",
    "SWEEPABLE",
    "SWEEP_CSV",
    "SWEEP_JSON",
    "SWEEP_YAML",
    "Point",
    "Sweep",
    "columns",
    "expand",
    "free_memory",
    "is_sweep_dir",
    "load_sweep",
    "parse_list",
    "point_configs",
    "point_row",
    "verdicts",
]
