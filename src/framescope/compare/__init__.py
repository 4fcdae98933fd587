"""Comparing runs: two run directories, or a baseline and a candidate measured again in interleaved rounds,
line by line with intervals and a noise floor; a CI gate on top (``framescope compare``)."""

from framescope.compare._compare import (
    MIN_STEPS,
    THROUGHPUT,
    Comparison,
    Line,
    compare_groups,
    compare_paths,
    compare_rounds,
    compare_runs,
    load_side,
    resolve_metric,
    stage_columns,
    stage_label,
)
from framescope.compare._rerun import COMPARE_FILE, config_of, overrides_between, rerun

__all__ = [
    "COMPARE_FILE",
    "MIN_STEPS",
    "THROUGHPUT",
    "Comparison",
    "Line",
    "compare_groups",
    "compare_paths",
    "compare_rounds",
    "compare_runs",
    "config_of",
    "load_side",
    "overrides_between",
    "rerun",
    "resolve_metric",
    "stage_columns",
    "stage_label",
]
