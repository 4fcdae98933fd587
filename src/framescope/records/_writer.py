"""Writing a run directory: config.yaml and system.json first, CSV rows as they happen, summary.json last.

A full disk must not cost the rows already measured: each CSV row goes to the OS in one unbuffered
``write`` and the writer remembers the size of the file up to the last whole row, so a row cut short by
ENOSPC (or a quota or file-size limit) is truncated away and the file still ends on a whole row. Nothing is
left in a userspace buffer to be written again at close. Text files are written to ``.NAME.tmp`` and renamed,
and the temporary file is removed when that fails. A little space is held back from the start of the rows
(in an unlinked file, so nothing is left behind by ``kill -9``) and given back when summary.json does not
fit, so a run stopped by a full disk usually still gets its summary.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from framescope._secrets import redact
from framescope.errors import OutputError, OutputSpaceError
from framescope.records._schema import COLUMNS

CONFIG_FILE = "config.yaml"
SYSTEM_FILE = "system.json"
SUMMARY_FILE = "summary.json"

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Errors that mean "no room": a full filesystem, a disk quota, a file-size limit (ulimit -f)."""

SUMMARY_RESERVE_BYTES = 32 * 1024
"""Held back while rows are written and given back for summary.json (a few KiB) when the disk is full."""


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.6g}"
    return str(value)


def is_space_error(exc: OSError) -> bool:
    """Whether ``exc`` says the disk, a quota or a file-size limit is full."""
    return exc.errno in SPACE_ERRNOS


def output_fix(exc: OSError, flag: str = "--output-dir") -> str:
    """How to get past ``exc`` when writing under the directory ``flag`` names."""
    if exc.errno == errno.EFBIG:
        return f"raise the file-size limit (ulimit -f) or pass {flag} on a filesystem with room"
    if exc.errno == errno.EDQUOT:
        return f"free space within your disk quota or pass {flag} on a filesystem with room"
    if exc.errno == errno.ENOSPC:
        return f"free space on that filesystem or pass {flag} on a filesystem with room"
    return f"check that filesystem or pass {flag} on another one"


def _output_error(message: str, exc: OSError) -> OutputError:
    return OutputSpaceError(message) if is_space_error(exc) else OutputError(message)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _kept(count: int, which: str) -> str:
    """``the 80 rows {which} are kept``, in words that fit the count."""
    if count == 0:
        return "no row was written before it" if which == "before it" else "no row was measured"
    return f"the 1 row {which} is kept" if count == 1 else f"the {count} rows {which} are kept"


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (after a short write, the next one raises the error)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # not expected from a regular file; do not spin
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def ensure_writable_dir(path: Path, flag: str = "--output-dir") -> None:
    """Create ``path`` (and parents) or raise an :class:`OutputError` saying why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{flag} {str(path)!r} exists and is not a directory; pick another path.") from None
    except OSError as exc:
        fix = output_fix(exc, flag) if is_space_error(exc) else "pick a writable directory"
        raise _output_error(f"cannot create {flag} {str(path)!r} ({_reason(exc)}); {fix}.", exc) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"{flag} {str(path)!r} is not writable; pick a writable directory or fix its permissions."
        )


class RunWriter:
    """Owns one run directory. Each row is handed to the OS as one whole line as it is written, so a run
    killed with ``kill -9`` keeps every finished batch, and a full disk keeps every row before it whole.

    Failures to write raise :class:`OutputError` (:class:`OutputSpaceError` when the disk is full) with a
    one-line message naming the file, what was kept and the fix. After a row could not be written, further
    rows raise the same error."""

    def __init__(self, run_dir: Path, csv_name: str, columns: tuple[str, ...] = COLUMNS) -> None:
        self.run_dir = run_dir
        self.csv_path = run_dir / csv_name
        self.columns = columns
        """The CSV's columns: a run's rows (COLUMNS), or another record's (a multi-model run's frames.csv)."""
        self.rows_written = 0
        self._fd: int | None = None
        self._size = 0
        """Bytes of the CSV up to the end of its last whole row."""
        self._line = io.StringIO()
        self._csv = csv.writer(self._line)
        self._rows_open = False
        """Whether the CSV (header included) was created: from then on, rows are being measured."""
        self._reserve: int | None = None
        self._made: list[Path] = []
        self._row_failure: tuple[OSError, OutputError] | None = None
        self._start_failure: tuple[str, OSError] | None = None

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
                fix = f"; {output_fix(exc)}" if is_space_error(exc) else ""
                raise _output_error(
                    f"cannot create run directory {str(run_dir)!r} ({_reason(exc)}){fix}.", exc
                ) from None
        raise OutputError(f"too many runs named {name!r} in {str(parent)!r}; pass --run-name.")

    @property
    def failed(self) -> bool:
        """Whether a row could not be written (the rows before it are on disk, whole)."""
        return self._row_failure is not None

    # -- whole files -------------------------------------------------------------------------------

    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` in the run directory atomically (a temporary file renamed over it). When the
        disk is full, the space held back for the summary is given back and the write tried once more.
        Passwords in stream URLs never reach the run directory (``rtsp://user:***@host``)."""
        data = redact(text).encode("utf-8")
        try:
            return self._replace(name, data)
        except OSError as first:
            error = first
        if is_space_error(error) and self._release_reserve():
            try:
                return self._replace(name, data)
            except OSError as second:
                error = second
        raise self._file_error(name, error) from None

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def _replace(self, name: str, data: bytes) -> Path:
        path = self.run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if path not in self._made:
            self._made.append(path)
        return path

    def _file_error(self, name: str, exc: OSError) -> OutputError:
        if self._row_failure is not None:
            # the run already stopped on a row that did not fit; say what is kept and what is missing
            row_exc, _ = self._row_failure
            return _output_error(
                f"{self._row_problem(row_exc)}; {_kept(self.rows_written, 'before it')} but {name} could "
                f"not be written either; {output_fix(row_exc)}.",
                row_exc,
            )
        if not self._rows_open:
            self._start_failure = (name, exc)
            kept = "nothing was measured yet"
        else:
            kept = _kept(self.rows_written, "measured")
        return _output_error(
            f"cannot write {name} in {str(self.run_dir)!r} ({_reason(exc)}); {kept}; {output_fix(exc)}.", exc
        )

    # -- rows ----------------------------------------------------------------------------------------

    def open_rows(self) -> None:
        """Create the CSV with its header, then hold back space for the summary (when there is any)."""
        header = self._encode(self.columns)
        try:
            self._fd = os.open(self.csv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            self._made.append(self.csv_path)
            _write_all(self._fd, header)
        except OSError as exc:
            self._close_rows()
            raise self._file_error(self.csv_path.name, exc) from None
        self._size = len(header)
        self._rows_open = True
        self._hold_reserve()

    def write_row(self, row: dict[str, Any]) -> None:
        if self._row_failure is not None:
            raise self._row_failure[1]
        assert self._fd is not None, "open_rows() first"
        data = self._encode([_format(row.get(column)) for column in self.columns])
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            trimmed = self._trim()
            kept = _kept(self.rows_written, "before it")
            if not trimmed:
                kept += " (the last line may be cut short)"
            error = _output_error(f"{self._row_problem(exc)}; {kept}; {output_fix(exc)}.", exc)
            self._row_failure = (exc, error)
            raise error from None
        self._size += len(data)
        self.rows_written += 1

    def _row_problem(self, exc: OSError) -> str:
        return f"cannot add row {self.rows_written + 1} to {str(self.csv_path)!r} ({_reason(exc)})"

    def _encode(self, cells: Iterable[str]) -> bytes:
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(cells)
        return self._line.getvalue().encode("utf-8")

    def _trim(self) -> bool:
        """Cut the CSV back to its last whole row; False if the OS would not."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            return False
        return True

    # -- space held back for the summary -----------------------------------------------------------

    def _hold_reserve(self) -> None:
        """Write SUMMARY_RESERVE_BYTES to a file with no name (O_TMPFILE, or created and unlinked at once)
        and keep it open: the space is the run's until :meth:`_release_reserve` or the process ends."""
        fd: int | None = None
        named = self.run_dir / ".summary-reserve.tmp"
        try:
            tmpfile = getattr(os, "O_TMPFILE", 0)
            try:
                if not tmpfile:
                    raise OSError(errno.EOPNOTSUPP, "no O_TMPFILE")
                fd = os.open(self.run_dir, tmpfile | os.O_WRONLY, 0o600)
            except OSError:  # not Linux, or a filesystem without O_TMPFILE
                fd = os.open(named, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.unlink(named)
            # random bytes: a compressing filesystem would store zeros in no space at all
            _write_all(fd, os.urandom(SUMMARY_RESERVE_BYTES))
        except OSError:  # no room for it (or no way to hide it): do without
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                named.unlink()
            return
        self._reserve = fd

    def _release_reserve(self) -> bool:
        fd, self._reserve = self._reserve, None
        if fd is None:
            return False
        with contextlib.suppress(OSError):
            os.close(fd)
        return True

    # -- the end -----------------------------------------------------------------------------------

    def abandon(self, error: OutputError) -> OutputError:
        """Set-up failed before anything was measured: remove the files this writer made and the run
        directory (if nothing else is in it). Returns ``error``, reworded to say so."""
        self.close()
        for path in reversed(self._made):
            with contextlib.suppress(OSError):
                path.unlink()
        try:
            self.run_dir.rmdir()
        except OSError:
            return error
        if self._start_failure is None:
            return error
        name, exc = self._start_failure
        return _output_error(
            f"cannot write {name} in {str(self.run_dir)!r} ({_reason(exc)}); nothing was measured yet and "
            f"the run directory was removed; {output_fix(exc)}.",
            exc,
        )

    def close(self) -> None:
        """Close the CSV and give back the space held for the summary. Never raises: each row was handed
        to the OS, and any error with it reported, when it was written."""
        self._release_reserve()
        self._close_rows()

    def _close_rows(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
