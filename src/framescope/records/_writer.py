"""Writing a run directory: config.yaml and system.json first, CSV rows as they happen, summary.json last."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Any

from framescope.errors import OutputError
from framescope.records._schema import COLUMNS

CONFIG_FILE = "config.yaml"
SYSTEM_FILE = "system.json"
SUMMARY_FILE = "summary.json"


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.6g}"
    return str(value)


def ensure_writable_dir(path: Path, flag: str = "--output-dir") -> None:
    """Create ``path`` (and parents) or raise an :class:`OutputError` saying why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{flag} {str(path)!r} exists and is not a directory; pick another path.") from None
    except OSError as exc:
        raise OutputError(
            f"cannot create {flag} {str(path)!r} ({exc.strerror}); pick a writable directory."
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"{flag} {str(path)!r} is not writable; pick a writable directory or fix its permissions."
        )


class RunWriter:
    """Owns one run directory. Rows are flushed to the OS as each is written, so a run killed with
    ``kill -9`` keeps every finished batch."""

    def __init__(self, run_dir: Path, csv_name: str) -> None:
        self.run_dir = run_dir
        self.csv_path = run_dir / csv_name
        self._file: IO[str] | None = None
        self._writer: Any = None
        self.rows_written = 0

    @classmethod
    def create(cls, parent: Path, name: str, csv_name: str, *, unique: bool = False) -> RunWriter:
        """Create ``parent/name``; with ``unique``, a taken name gets a ``-2``, ``-3``... suffix instead of
        being an error (for generated names, which two quick runs can share)."""
        ensure_writable_dir(parent)
        for attempt in range(1, 1000):
            run_dir = parent / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                run_dir.mkdir()
                return cls(run_dir, csv_name)
            except FileExistsError:
                if not unique:
                    raise OutputError(
                        f"run directory {str(run_dir)!r} already exists; pass another --run-name or "
                        "--output-dir."
                    ) from None
            except OSError as exc:
                raise OutputError(f"cannot create run directory {str(run_dir)!r} ({exc.strerror}).") from None
        raise OutputError(f"too many runs named {name!r} in {str(parent)!r}; pass --run-name.")

    def write_text(self, name: str, text: str) -> Path:
        path = self.run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def open_rows(self) -> None:
        self._file = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._file.flush()

    def write_row(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "open_rows() first"
        self._writer.writerow([_format(row.get(column)) for column in COLUMNS])
        self._file.flush()
        self.rows_written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
