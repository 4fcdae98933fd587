"""Stream passwords never reach anything framescope writes or prints; the reader still connects with them."""

from __future__ import annotations

import base64
import http.server
import logging
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml
from tests.conftest import run_cli

from framescope._secrets import redact, redact_value
from framescope.errors import SourceError
from framescope.instrument import FakeClock
from framescope.sources import LiveSource, Source, SourceInfo

PASSWORD = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter2@192.168.1.2:554/h264", "rtsp://admin:***@192.168.1.2:554/h264"),
        ("http://u:p%40ss@cam/x.ts?x=1", "http://u:***@cam/x.ts?x=1"),
        ("rtsp://u:p@ss@cam/s", "rtsp://u:***@cam/s"),  # an unencoded @ in the password
        ("error 'rtsp://a:b@h/s' and http://c:d@i/t", "error 'rtsp://a:***@h/s' and http://c:***@i/t"),
        ("https://cdn/live.m3u8?token=abc123&q=1", "https://cdn/live.m3u8?token=***&q=1"),
        ("rtsp://camera/stream", "rtsp://camera/stream"),
        ("rtsp://user@camera/stream", "rtsp://user@camera/stream"),
        ("/videos/a:b@c.mp4", "/videos/a:b@c.mp4"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_value_walks_containers() -> None:
    data = {"source": {"input_path": f"rtsp://u:{PASSWORD}@h/s", "n": 3}, "list": [f"http://a:{PASSWORD}@b/"]}
    assert PASSWORD not in str(redact_value(data)) and redact_value(data)["source"]["n"] == 3
    assert PASSWORD in data["source"]["input_path"]  # the caller's value is left alone


def test_errors_and_source_info_are_redacted() -> None:
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:9/stream"
    assert PASSWORD not in str(SourceError(f"stream {url} could not be opened"))
    assert (
        SourceInfo(kind="stream", uri=url, decoder="pyav", live=True).uri
        == "rtsp://viewer:***@127.0.0.1:9/stream"
    )


class AuthRecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files only to viewer:PASSWORD (HTTP Basic), and remembers each request's Authorization."""

    seen: list[str | None]
    expected = "Basic " + base64.b64encode(f"viewer:{PASSWORD}".encode()).decode()

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_server(ts_clip: Path) -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Handler", (AuthRecordingHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(ts_clip.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://viewer:{PASSWORD}@127.0.0.1:{server.server_address[1]}/{ts_clip.name}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _everything_written(run_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_a_run_over_a_url_with_a_password_writes_and_prints_no_password(
    auth_server: tuple[str, list[str | None]], out_dir: Path, decoder: str
) -> None:
    url, seen = auth_server
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", url, "--decoder", decoder,
        "--batch-size", "4", "--max-steps", "3", "--output-dir", str(out_dir), "--progress", "log",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert AuthRecordingHandler.expected in seen  # the reader connected with the real credentials
    (run_dir,) = out_dir.iterdir()
    written = _everything_written(run_dir)
    assert PASSWORD not in result.out + result.err + written
    assert "viewer:***@127.0.0.1" in result.out  # the printed configuration and input line
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["source"]["input_path"].startswith("http://viewer:***@127.0.0.1:")
    assert '"uri": "http://viewer:***@127.0.0.1' in (run_dir / "summary.json").read_text()


def test_a_yaml_config_with_a_password_is_redacted_in_the_run_directory(
    auth_server: tuple[str, list[str | None]], out_dir: Path, tmp_path: Path
) -> None:
    url, seen = auth_server
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "mobilenet_v3_small"},
                "source": {"input_path": url, "decoder": "pyav"},
                "max_steps": 2,
                "progress": "none",
                "output_dir": str(out_dir),
            }
        )
    )
    result = run_cli("run", "--config", str(config))
    assert result.code == 0, result.err
    assert AuthRecordingHandler.expected in seen
    (run_dir,) = out_dir.iterdir()
    assert PASSWORD not in _everything_written(run_dir) + result.out + result.err
    assert PASSWORD in config.read_text()  # the user's own file is theirs


def test_an_unreachable_stream_with_a_password_is_reported_without_it(out_dir: Path) -> None:
    result = run_cli(
        "run", "--model-name", "mobilenet_v3_small", "--input_path", f"rtsp://viewer:{PASSWORD}@127.0.0.1:9/s",
        "--decoder", "pyav", "--open-timeout", "2", "--output-dir", str(out_dir),
    )  # fmt: skip
    assert result.code == 2
    assert "rtsp://viewer:***@127.0.0.1:9/s" in result.err and PASSWORD not in result.out + result.err


def _drain(source: Source) -> None:
    while source.read() is not None:
        pass


def test_reconnect_log_lines_carry_no_password(caplog: pytest.LogCaptureFixture) -> None:
    """The live reader logs every reconnect attempt with the stream's address and the cause."""
    url = f"rtsp://viewer:{PASSWORD}@camera.local/stream"

    class Gone(Source):
        def __init__(self) -> None:
            super().__init__()
            self.info = SourceInfo(kind="stream", uri=url, decoder="pyav", live=True)

        def open(self) -> None:
            raise SourceError(f"stream {url} could not be opened (Connection refused)")

    opened = [Source()]
    opened[0].info = SourceInfo(kind="stream", uri=url, decoder="pyav", live=True)
    opened[0].open = lambda: None  # type: ignore[method-assign]
    opened[0].read = lambda: None  # type: ignore[method-assign]
    made = iter([opened[0]])
    clock = FakeClock()
    source = LiveSource(
        lambda: next(made, None) or Gone(), capacity=2, clock=clock, sleep=clock.sleep, reconnect_for_s=3.0,
        backoff=lambda attempt: 1.0,
    )  # fmt: skip
    source.open()
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as error:
        _drain(source)
    source.close()
    assert PASSWORD not in str(error.value)
    assert caplog.records and PASSWORD not in caplog.text
    assert "viewer:***@camera.local" in caplog.text
