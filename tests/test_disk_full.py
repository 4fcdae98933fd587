"""A full disk: one clear line and exit code 2, the rows already measured kept whole, no temporary files left.

The real thing runs ``framescope run`` on a tiny tmpfs the test mounts (root only; CI runs as root) and fills
with a file to choose when the space runs out. The writer's trimming and the trace's clean-up are also tested
in-process with a stand-in for ``os`` that fails writes the way the kernel does (a short write, then ENOSPC).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REQUIRE_SYSTEM_DEPS

from framescope import load_run
from framescope.errors import OutputError, OutputSpaceError
from framescope.instrument import ProfilerWindow
from framescope.records import COLUMNS, RunWriter, _writer
from framescope.records._writer import SUMMARY_RESERVE_BYTES

KIB = 1024
PAGE = 4 * KIB
CSV_NAME = "M_m_P_1_metrics.csv"


# -- a tmpfs to fill -------------------------------------------------------------------------------------


def _cannot_mount(why: str) -> None:
    """Skip (locally) or fail (in CI, FRAMESCOPE_REQUIRE_SYSTEM_DEPS=1) when no tmpfs can be mounted."""
    message = f"cannot mount a tmpfs to fill ({why}); these tests need root, as CI runs them"
    if REQUIRE_SYSTEM_DEPS:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``mount(size_kib)`` mounts a tmpfs of that size (once per test) and returns its directory; it is
    unmounted after the test."""
    mounted: list[Path] = []

    def mount(size_kib: int) -> Path:
        if sys.platform != "linux" or os.geteuid() != 0:
            _cannot_mount("not root on Linux")
        if shutil.which("mount") is None:
            _cannot_mount("no mount command")
        target = tmp_path / "full"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            _cannot_mount(done.stderr.strip() or f"mount exited with {done.returncode}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        if subprocess.run(["umount", str(target)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=False)


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path, leave: int) -> None:
    """Fill ``directory``'s filesystem with a file until only ``leave`` bytes are free."""
    remaining = free_bytes(directory) - leave
    with open(directory / "fill", "wb", buffering=0) as handle:
        while remaining > 0:
            remaining -= handle.write(b"\xff" * min(remaining, 64 * KIB)) or 0
    assert free_bytes(directory) == leave


def framescope_run(output_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "framescope",
            "run",
            "--model-name",
            "mobilenet_v3_small",
            "--batch-size",
            "1",
            "--output-dir",
            str(output_dir),
            "--progress",
            "none",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The run's stderr, which must be exactly one ``framescope: error:`` line."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("framescope: error: "), done.stderr
    return lines[0]


def temporary_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


def whole_rows(csv_path: Path) -> list[list[str]]:
    """The CSV's data rows; fails unless every line is a complete row with as many fields as the header."""
    data = csv_path.read_bytes()
    assert data.endswith(b"\r\n"), data[-200:]
    with open(csv_path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == list(COLUMNS)
    assert all(len(line) == len(COLUMNS) for line in lines), [len(line) for line in lines]
    rows = lines[1:]
    steps = COLUMNS.index("step"), COLUMNS.index("total_step_latency_ms")
    assert [int(row[steps[0]]) for row in rows] == list(range(len(rows)))
    assert all(row[steps[1]] for row in rows)
    return rows


def kept_rows(message: str) -> int:
    match = re.search(r"the (\d+) rows? before it (?:are|is) kept", message)
    assert match, message
    return int(match.group(1))


# -- framescope run on a full filesystem ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["sync", "async"])
def test_disk_full_mid_run_keeps_whole_rows_and_writes_the_summary(
    small_tmpfs: Callable[[int], Path], pipeline: str
) -> None:
    mount = small_tmpfs(256)
    # config.yaml, system.json, the space held back for the summary, and two pages of rows (about 80)
    fill(mount, leave=PAGE + PAGE + SUMMARY_RESERVE_BYTES + 2 * PAGE)
    # an endless input: the run can only end by filling the disk
    done = framescope_run(mount, "--input_path", "synthetic:64x64", "--pipeline", pipeline)

    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    (run_dir,) = [p for p in mount.iterdir() if p.is_dir()]
    assert str(run_dir) in line and "No space left on device" in line and "free space" in line
    assert "--output-dir" in line
    kept = kept_rows(line)
    assert kept > 10

    (csv_path,) = run_dir.glob("M_*_metrics.csv")
    assert len(whole_rows(csv_path)) == kept
    assert temporary_files(mount) == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == line.removeprefix("framescope: error: ")
    assert summary["steps"] == kept
    run = load_run(run_dir)
    assert len(run.rows) == kept and run.status == "failed"
    assert "run failed" in done.stdout  # the summary of what was measured is still printed


@pytest.mark.slow
def test_a_summary_that_does_not_fit_is_named_in_the_error(small_tmpfs: Callable[[int], Path]) -> None:
    mount = small_tmpfs(256)
    # config.yaml, system.json, the summary written at the start and one page of rows; no room to hold any
    # back for the final summary
    fill(mount, leave=4 * PAGE)
    done = framescope_run(mount, "--input_path", "synthetic:64x64")

    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    (run_dir,) = [p for p in mount.iterdir() if p.is_dir()]
    assert str(run_dir) in line and "space" in line
    assert "summary.json could not be written" in line
    (csv_path,) = run_dir.glob("M_*_metrics.csv")
    assert len(whole_rows(csv_path)) == kept_rows(line)
    # the summary written at the start (status running) is still there, whole
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    assert temporary_files(mount) == []
    run = load_run(run_dir)  # what load_run makes of a run that could not finish its summary
    assert run.status == "incomplete" and len(run.rows) == kept_rows(line)


@pytest.mark.slow
def test_a_run_whose_summary_does_not_fit_fails(small_tmpfs: Callable[[int], Path]) -> None:
    mount = small_tmpfs(256)
    fill(mount, leave=4 * PAGE)  # config.yaml, system.json, the starting summary, the 20 rows; nothing more
    done = framescope_run(mount, "--input_path", "synthetic:64x64:20")

    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    (run_dir,) = [p for p in mount.iterdir() if p.is_dir()]
    assert line == (
        f"framescope: error: cannot write summary.json in {str(run_dir)!r} (No space left on device); the "
        "20 rows measured are kept; free space on that filesystem or pass --output-dir on a filesystem with "
        "room."
    )
    (csv_path,) = run_dir.glob("M_*_metrics.csv")
    assert len(whole_rows(csv_path)) == 20
    assert temporary_files(mount) == []
    assert "run failed" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("leave", "failing_file"), [(0, "config.yaml"), (PAGE, "system.json"), (2 * PAGE, "summary.json")]
)
def test_disk_full_at_start_leaves_no_run_directory(
    small_tmpfs: Callable[[int], Path], leave: int, failing_file: str
) -> None:
    mount = small_tmpfs(64)
    fill(mount, leave=leave)
    done = framescope_run(mount, "--input_path", "synthetic:64x64:20")

    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert f"cannot write {failing_file} in '{mount}/" in line
    assert "No space left on device" in line and "free space" in line and "--output-dir" in line
    assert "the run directory was removed" in line
    assert sorted(p.name for p in mount.iterdir()) == ["fill"]


@pytest.mark.slow
def test_a_trace_that_does_not_fit_is_a_warning(small_tmpfs: Callable[[int], Path]) -> None:
    mount = small_tmpfs(256)  # room for the rows; mobilenet's trace of three steps is over a megabyte
    done = framescope_run(mount, "--input_path", "synthetic:64x64:30", "--torch-profile")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "framescope: error" not in done.stderr
    (run_dir,) = [p for p in mount.iterdir() if p.is_dir()]
    assert "warning [no_trace] no torch.profiler trace: cannot write" in done.stdout  # a finding
    assert not (run_dir / "torch_trace.json").exists()
    assert temporary_files(mount) == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["trace"] is None
    assert any(w.startswith("no torch.profiler trace: cannot write") for w in summary["warnings"])
    (csv_path,) = run_dir.glob("M_*_metrics.csv")
    assert len(whole_rows(csv_path)) == 30


# -- the writer, with writes that fail as on a full disk ---------------------------------------------------


class FailingDisk:
    """Stands in for ``os`` in the writer: writes to files for which ``limited(path)`` is true fail with
    ``code`` once ``budget`` bytes have gone to them, after a short write as the kernel does. With
    ``reserve_holds`` set, they also fail while any file in ``reserve_fds`` (the writer's space held back for
    the summary) is open."""

    def __init__(self, limited: Callable[[str], bool], budget: int, code: int = errno.ENOSPC) -> None:
        self.limited, self.budget, self.code = limited, budget, code
        self.used = 0
        self.paths: dict[int, str] = {}
        self.reserve_fds: set[int] = set()
        self.reserve_holds = False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        fd = os.open(path, flags, mode)
        self.paths[fd] = str(path)
        return fd

    def close(self, fd: int) -> None:
        self.reserve_fds.discard(fd)
        os.close(fd)

    def write(self, fd: int, data: Any) -> int:
        if not self.limited(self.paths.get(fd) or os.readlink(f"/proc/self/fd/{fd}")):
            return os.write(fd, data)
        room = self.budget - self.used
        if room <= 0 or (self.reserve_holds and self.reserve_fds):
            raise OSError(self.code, os.strerror(self.code))
        written = os.write(fd, bytes(data[:room]))
        self.used += written
        return written


def _row(step: int) -> dict[str, Any]:
    return {
        "step": step,
        "frames": 1,
        "batch_size": 1,
        "total_step_latency_ms": 12.345678,
        "read_latency_ms": 1.5,
    }


def _writer_with_rows(tmp_path: Path, count: int) -> tuple[RunWriter, bytes]:
    writer = RunWriter.create(tmp_path, "run", CSV_NAME)
    writer.write_text("config.yaml", "batch_size: 1\n")
    writer.open_rows()
    for step in range(count):
        writer.write_row(_row(step))
    return writer, writer.csv_path.read_bytes()


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free space on that filesystem"),
        (errno.EDQUOT, "free space within your disk quota"),
        (errno.EFBIG, "raise the file-size limit (ulimit -f)"),
    ],
)
def test_a_row_cut_short_by_a_full_disk_is_trimmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str
) -> None:
    writer, before = _writer_with_rows(tmp_path, 3)
    disk = FailingDisk(lambda path: path.endswith(CSV_NAME), budget=40, code=code)  # half a row fits
    monkeypatch.setattr(_writer, "os", disk)

    with pytest.raises(OutputSpaceError) as caught:
        writer.write_row(_row(3))
    message = str(caught.value)
    assert disk.used == 40  # the short write happened, and was cut away again
    assert writer.csv_path.read_bytes() == before
    assert message.startswith(f"cannot add row 4 to {str(writer.csv_path)!r} ({os.strerror(code)})")
    assert "the 3 rows before it are kept" in message and fix in message
    assert writer.failed and writer.rows_written == 3

    # further rows are refused with the same error, and nothing more reaches the file
    disk.budget = 10**6
    with pytest.raises(OutputSpaceError) as again:
        writer.write_row(_row(4))
    assert again.value is caught.value
    writer.close()
    assert writer.csv_path.read_bytes() == before
    assert len(whole_rows(writer.csv_path)) == 3


@pytest.mark.parametrize(
    ("rows", "kept"), [(0, "no row was written before it"), (1, "the 1 row before it is kept")]
)
def test_the_message_counts_the_rows_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int, kept: str
) -> None:
    writer, before = _writer_with_rows(tmp_path, rows)
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith(CSV_NAME), budget=3))
    with pytest.raises(OutputSpaceError, match=f"; {kept}; free space"):
        writer.write_row(_row(rows))
    writer.close()
    assert writer.csv_path.read_bytes() == before


def test_other_write_errors_keep_whole_rows_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, before = _writer_with_rows(tmp_path, 2)
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith(CSV_NAME), 7, errno.EIO))
    with pytest.raises(OutputError) as caught:
        writer.write_row(_row(2))
    assert not isinstance(caught.value, OutputSpaceError)
    assert "(Input/output error); the 2 rows before it are kept" in str(caught.value)
    writer.close()
    assert writer.csv_path.read_bytes() == before


def test_a_file_that_does_not_fit_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, _ = _writer_with_rows(tmp_path, 2)
    writer.close()  # gives back the space held for the summary: nothing left to fall back on
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith(".tmp"), budget=100))
    with pytest.raises(
        OutputSpaceError, match=r"cannot write summary.json in .*the 2 rows measured are kept"
    ):
        writer.write_json("summary.json", {"status": "complete", "padding": "x" * 1000})
    assert sorted(p.name for p in writer.run_dir.iterdir()) == [CSV_NAME, "config.yaml"]


def test_space_held_back_lets_the_summary_be_written_after_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, before = _writer_with_rows(tmp_path, 2)
    disk = FailingDisk(lambda path: path.endswith((CSV_NAME, ".tmp")), budget=0)
    monkeypatch.setattr(_writer, "os", disk)
    with pytest.raises(OutputSpaceError):
        writer.write_row(_row(2))

    # no room for the summary until the space held back is given back
    disk.budget, disk.reserve_holds = 10**6, True
    assert writer._reserve is not None
    disk.reserve_fds.add(writer._reserve)
    writer.write_json("summary.json", {"status": "failed"})
    assert json.loads((writer.run_dir / "summary.json").read_text()) == {"status": "failed"}
    assert not disk.reserve_fds
    writer.close()
    assert writer.csv_path.read_bytes() == before
    assert temporary_files(writer.run_dir) == []


def test_a_summary_that_does_not_fit_after_a_full_disk_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, _ = _writer_with_rows(tmp_path, 5)
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith((CSV_NAME, ".tmp")), budget=0))
    with pytest.raises(OutputSpaceError):
        writer.write_row(_row(5))
    with pytest.raises(OutputSpaceError) as caught:
        writer.write_json("summary.json", {"status": "failed"})
    assert str(caught.value).startswith(
        f"cannot add row 6 to {str(writer.csv_path)!r} (No space left on device)"
    )
    assert "the 5 rows before it are kept but summary.json could not be written either" in str(caught.value)
    writer.close()
    assert temporary_files(writer.run_dir) == []


def test_set_up_that_does_not_fit_removes_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = RunWriter.create(tmp_path, "run", CSV_NAME)
    writer.write_text("config.yaml", "batch_size: 1\n")
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith(".tmp"), budget=10))
    with pytest.raises(OutputSpaceError) as caught:
        writer.write_json("system.json", {"cpu": "x" * 100})
    assert "nothing was measured yet" in str(caught.value)
    error = writer.abandon(caught.value)
    assert isinstance(error, OutputSpaceError)
    assert str(error) == (
        f"cannot write system.json in {str(writer.run_dir)!r} (No space left on device); nothing was "
        "measured yet and the run directory was removed; free space on that filesystem or pass --output-dir "
        "on a filesystem with room."
    )
    assert list(tmp_path.iterdir()) == []


def test_a_header_that_does_not_fit_removes_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = RunWriter.create(tmp_path, "run", CSV_NAME)
    writer.write_text("config.yaml", "batch_size: 1\n")
    monkeypatch.setattr(_writer, "os", FailingDisk(lambda path: path.endswith(CSV_NAME), budget=10))
    with pytest.raises(OutputSpaceError) as caught:
        writer.open_rows()
    assert "cannot write M_m_P_1_metrics.csv in" in str(writer.abandon(caught.value))
    assert list(tmp_path.iterdir()) == []


# -- the torch.profiler trace ------------------------------------------------------------------------------


class FakeProfile:
    """Exports like kineto on a full disk: ``PATH.tmp`` cut short and left behind, no error raised."""

    def __init__(self, content: bytes, raises: OSError | None = None) -> None:
        self.content, self.raises = content, raises

    def export_chrome_trace(self, path: str) -> None:
        if self.raises is not None:
            raise self.raises
        Path(path + ".tmp").write_bytes(self.content)
        if self.content.endswith(b"}"):
            os.replace(path + ".tmp", path)


def test_a_trace_cut_short_is_removed_and_reported(tmp_path: Path) -> None:
    window = ProfilerWindow(enabled=True, trace_path=tmp_path / "torch_trace.json")
    window._write(FakeProfile(b'{"traceEvents": [{"name": "x"'))
    assert window.written is None
    assert window.failure is not None
    assert window.failure.startswith(
        f"no torch.profiler trace: cannot write {str(tmp_path / 'torch_trace.json')!r}"
    )
    assert "free space" in window.failure
    assert list(tmp_path.iterdir()) == []


def test_a_trace_export_error_is_reported(tmp_path: Path) -> None:
    window = ProfilerWindow(enabled=True, trace_path=tmp_path / "torch_trace.json")
    no_space = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    window._write(FakeProfile(b"", raises=no_space))
    assert window.written is None and window.failure is not None
    assert "(No space left on device" in window.failure
    assert list(tmp_path.iterdir()) == []


def test_a_whole_trace_is_kept(tmp_path: Path) -> None:
    window = ProfilerWindow(enabled=True, trace_path=tmp_path / "torch_trace.json")
    window._write(FakeProfile(b'{"traceEvents": []}'))
    assert window.written == tmp_path / "torch_trace.json" and window.failure is None
