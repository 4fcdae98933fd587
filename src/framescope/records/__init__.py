"""Run records: batch rows, the summary, and the run directory format (write, read back)."""

from framescope.records._result import RunResult, load_run, read_rows
from framescope.records._schema import (
    COLUMN_DOCS,
    COLUMNS,
    PRODUCER_STAGES,
    SEED_COLUMNS,
    STAGE_COLUMNS,
    WAIT_COLUMNS,
    metrics_filename,
)
from framescope.records._summary import stage_stats, summarize
from framescope.records._writer import (
    CONFIG_FILE,
    SUMMARY_FILE,
    SYSTEM_FILE,
    RunWriter,
    ensure_writable_dir,
)

__all__ = [
    "COLUMNS",
    "COLUMN_DOCS",
    "CONFIG_FILE",
    "PRODUCER_STAGES",
    "SEED_COLUMNS",
    "STAGE_COLUMNS",
    "SUMMARY_FILE",
    "SYSTEM_FILE",
    "WAIT_COLUMNS",
    "RunResult",
    "RunWriter",
    "ensure_writable_dir",
    "load_run",
    "metrics_filename",
    "read_rows",
    "stage_stats",
    "summarize",
]
