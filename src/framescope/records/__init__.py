"""Run records: typed rows, the summary, and the run directory format (the recorder writes it, load_run reads
it back)."""

from framescope.records._recorder import TRACE_FILE, RunRecorder, make_row
from framescope.records._result import RunResult, load_run, read_rows
from framescope.records._schema import (
    COLUMN_DOCS,
    COLUMNS,
    PRODUCER_STAGES,
    SEED_COLUMNS,
    STAGE_COLUMNS,
    WAIT_COLUMNS,
    Row,
    metrics_filename,
)
from framescope.records._sources import SourceTally
from framescope.records._summary import RUNNING, build_summary, stage_stats, steady_rows, summarize
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
    "RUNNING",
    "SEED_COLUMNS",
    "STAGE_COLUMNS",
    "SUMMARY_FILE",
    "SYSTEM_FILE",
    "TRACE_FILE",
    "WAIT_COLUMNS",
    "Row",
    "RunRecorder",
    "RunResult",
    "RunWriter",
    "SourceTally",
    "build_summary",
    "ensure_writable_dir",
    "load_run",
    "make_row",
    "metrics_filename",
    "read_rows",
    "stage_stats",
    "steady_rows",
    "summarize",
]
