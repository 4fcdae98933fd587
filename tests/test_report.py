"""framescope report: the HTML page of real run directories (charts hold the runs' own numbers, nothing refers
to the network), bad input, and headless Chromium loading the page offline and drawing every chart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import needs_system_dependency, run_cli

import framescope
from framescope import RunConfig, load_run, stats
from framescope.records import steady_rows
from framescope.report import write_report
from framescope.report._facts import stage_label
from framescope.report._run_charts import live_latency
from framescope.report._sections import FIGURE_CLASS

SMALL = "mobilenet_v3_small"
TOTAL = "total_step_latency_ms"


def make_run(out_dir: Path, clip: Path, name: str, **flat: Any) -> Path:
    flat = {"model_name": SMALL, "batch_size": 4, "progress": "none", "warmup_steps": 2, **flat}
    config = RunConfig.from_flat(input_path=str(clip), output_dir=str(out_dir), run_name=name, **flat)
    result = framescope.run(config)
    assert result.status == "complete"
    return result.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-runs")


@pytest.fixture(scope="module")
def sync_run(runs: Path, clip: Path) -> Path:
    return make_run(runs, clip, "sync", max_steps=6)


@pytest.fixture(scope="module")
def live_run(runs: Path, clip: Path) -> Path:
    """The clip replayed as a live source at 60 frames per second, with a deadline."""
    return make_run(runs, clip, "live", source_fps=60, deadline_ms=100)


@pytest.fixture(scope="module")
def async_run(runs: Path, clip: Path) -> Path:
    """18 steps: long enough for the async pipeline to measure its thread plan (8 steps after warm-up)."""
    return make_run(runs, clip, "async", pipeline="async", batch_size=2)


FINDINGS = [
    {
        "id": "oversubscribed",
        "severity": "warning",
        "message": "threads waited for a CPU 19% of the time <script>alert(1)</script>",
        "evidence": {"wait_share": 0.19343, "threshold": 0.1},
        "overrides": {"torch_threads": 1},
    },
    {
        "id": "decode_bound",
        "severity": "info",
        "message": "decoding sets the pace",
        "evidence": {},
        "overrides": {},
    },
]

TUNE = {
    "original_command": "framescope run --model-name mobilenet_v3_small --input_path clip.mp4",
    "command": "framescope run --model-name mobilenet_v3_small --input_path clip.mp4 --torch-threads 1",
    "overrides": {"torch_threads": 1},
    "speedup": {"value": 1.21, "low": 1.12, "high": 1.3},
    "rounds": 3,
    "interrupted": False,
    "trials": [
        {
            "finding": "oversubscribed",
            "overrides": {"torch_threads": 1},
            "flags": "--torch-threads 1",
            "command": "framescope run ... --torch-threads 1",
            "baseline_fps": [100.0, 104.0, 98.0],
            "candidate_fps": [121.0, 125.0, 119.0],
            "speedup": {"value": 1.21, "low": 1.12, "high": 1.3},
            "verdict": "faster",
            "error": None,
            "run_dirs": ["a", "b"],
        },
        {
            "finding": "decode_bound",
            "overrides": {"decoder": "pyav", "use_amp": True},
            "command": "framescope run ... --decoder pyav",
            "baseline_fps": [100.0, 101.0],
            "candidate_fps": [99.0, 102.0],
            "speedup": {"value": 0.99, "low": 0.95, "high": 1.04},
            "verdict": "no measurable change",
            "error": None,
            "run_dirs": [],
        },
        {
            "finding": "memory_bound",
            "overrides": {"batch_size": 64},
            "command": "framescope run ... --batch-size 64",
            "baseline_fps": [],
            "candidate_fps": [],
            "speedup": None,
            "verdict": "failed",
            "error": "out of memory at batch size 64",
            "run_dirs": [],
        },
    ],
}


@pytest.fixture(scope="module")
def diagnosed_run(runs: Path, sync_run: Path) -> Path:
    """The sync run with hand-added findings and a hand-written tune.json."""
    run_dir = runs / "diagnosed"
    shutil.copytree(sync_run, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["findings"] = FINDINGS
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "tune.json").write_text(json.dumps(TUNE))
    return run_dir


# --- reading the page back --------------------------------------------------------------------------------


class Page(HTMLParser):
    """The report's charts (div id -> figure JSON), every src/href, and the text of each table."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, Any]] = {}
        self.divs: list[str] = []
        self.links: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self._target: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.links.extend(v for k, v in attrs if k in ("src", "href") and v)
        if tag == "div" and attributes.get("class") == "fs-chart":
            self.divs.append(str(attributes["id"]))
        if tag == "script":
            self.scripts.append(attributes)
            if attributes.get("class") == FIGURE_CLASS:
                self._target = attributes["data-target"]

    def handle_data(self, data: str) -> None:
        if self._target is not None:
            self.figures[self._target] = json.loads(data)
            self._target = None


def report(tmp_path: Path, *run_dirs: Path) -> tuple[str, Page]:
    path = write_report(list(run_dirs), tmp_path / "report.html")
    text = path.read_text()
    return text, Page(text)


def traces(figure: dict[str, Any], kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {t.get("name", ""): t for t in figure["data"] if kind is None or t["type"] == kind}


def assert_offline(text: str, page: Page) -> None:
    """Nothing a browser would fetch: no src/href to the network, no external script or stylesheet, and
    plotly.js inline exactly once."""
    from plotly.offline import get_plotlyjs

    assert [link for link in page.links if re.match(r"\s*(https?:)?//", link)] == []
    assert all(script.get("src") is None for script in page.scripts)
    assert "<link" not in text and "@import" not in text and "url(" not in text.split("<script", 1)[0]
    assert text.count(get_plotlyjs()[:300]) == 1
    assert set(page.divs) == set(page.figures)


# --- one run ----------------------------------------------------------------------------------------------


def test_one_run_holds_every_chart_with_the_runs_numbers(tmp_path: Path, sync_run: Path) -> None:
    run = load_run(sync_run)
    text, page = report(tmp_path, sync_run)
    assert_offline(text, page)
    assert {"r1-stages", "r1-timeline", "r1-distributions"} <= set(page.figures)
    stages = run.summary["stages"]

    # stacked bars: each stage's mean and p99 from summary.json, the step's wall time as a line
    bars = traces(page.figures["r1-stages"], "bar")
    assert set(bars) == {stage_label(c) for c in stages if c != TOTAL}
    assert bars["exec"]["y"] == [stages["exec_latency_ms"]["mean_ms"], stages["exec_latency_ms"]["p99_ms"]]
    walls = [s["y0"] for s in page.figures["r1-stages"]["layout"]["shapes"]]
    assert walls == [stages[TOTAL]["mean_ms"], stages[TOTAL]["p99_ms"]]

    # the timeline: every step from the CSV, the warm-up steps shaded
    lines = traces(page.figures["r1-timeline"], "scatter")
    assert lines["exec"]["x"] == list(range(len(run.rows)))
    assert lines["step total"]["y"] == pytest.approx(run.rows[TOTAL].tolist())
    shades = [s for s in page.figures["r1-timeline"]["layout"]["shapes"] if s["name"] == "warm-up steps"]
    assert [(s["x0"], s["x1"]) for s in shades] == [(-0.5, 1.5)]  # steps 0 and 1

    # the boxes: steady-state steps only; quartiles by the summary's own percentile rule, so median == p50
    steady = steady_rows(run.rows)
    assert len(steady) == len(run.rows) - 2
    boxes = traces(page.figures["r1-distributions"], "box")
    for column, stat in stages.items():
        box, expected = boxes[stage_label(column)], stats.box_stats(steady[column].dropna().tolist())
        assert box["median"] == [pytest.approx(stat["p50_ms"])]
        assert box["q1"] == [pytest.approx(expected.q1)] and box["q3"] == [pytest.approx(expected.q3)]
        assert box["upperfence"] == [pytest.approx(expected.high)]
    p99 = traces(page.figures["r1-distributions"])["p99 (summary)"]["y"]
    assert p99 == [pytest.approx(s["p99_ms"]) for s in stages.values()]

    # the facts the console prints, as tables; no live or what-if section for a file run without tune.json
    assert f"{run.summary['steady_fps']:.1f} over {run.summary['steady_steps']} steps" in text
    assert run.system["cpu_model"] in text and "Findings" in text
    assert "r1-live" not in page.figures and "r1-tune" not in page.figures


def test_cpu_and_thread_charts_show_the_summary(tmp_path: Path, sync_run: Path) -> None:
    summary = load_run(sync_run).summary
    _, page = report(tmp_path, sync_run)
    by_thread = summary["cpu"]["wait"]["by_thread"]
    waits = traces(page.figures["r1-threads"])
    assert dict(zip(waits["on a CPU"]["y"], waits["on a CPU"]["x"], strict=True)) == {
        name: pytest.approx(t["run_s"]) for name, t in by_thread.items()
    }
    parallelism = summary["cpu"].get("stage_parallelism")
    if parallelism:
        assert sorted(page.figures["r1-stage-cores"]["data"][0]["y"]) == sorted(parallelism.values())
    # cores busy over set-up and over the run, each where the kernel's counters resolved it
    phases = {"set-up": summary.get("setup_cpu") or {}, "run": summary["cpu"]}
    measured = {name: phase for name, phase in phases.items() if phase.get("ours") is not None}
    if measured:
        bars = traces(page.figures["r1-cpu"])
        assert bars["this process"]["y"] == list(measured)
        assert bars["this process"]["x"] == [pytest.approx(p["ours"]) for p in measured.values()]
        assert bars["other processes"]["x"] == [pytest.approx(p["others"]) for p in measured.values()]
    else:
        assert "r1-cpu" not in page.figures


def test_a_live_run_shows_latency_over_time(tmp_path: Path, live_run: Path) -> None:
    run = load_run(live_run)
    assert run.summary["live"]
    text, page = report(tmp_path, live_run)
    assert_offline(text, page)
    figure = page.figures["r1-live"]
    lines = traces(figure, "scatter")
    assert lines["oldest frame of the batch"]["x"] == pytest.approx(run.rows["step_start_s"].tolist())
    assert lines["oldest frame of the batch"]["y"] == pytest.approx(run.rows["latency_ms"].tolist())
    assert lines["newest frame of the batch"]["y"] == pytest.approx(run.rows["latency_min_ms"].tolist())
    deadline = [s for s in figure["layout"]["shapes"] if s["type"] == "line"]
    assert [s["y0"] for s in deadline] == [100]


def test_the_live_chart_marks_dropped_frames_and_reconnects(live_run: Path) -> None:
    run = load_run(live_run)
    rows = run.rows.copy()
    last = rows.index[-1]
    rows["dropped_frames"] = 0
    rows.loc[1, "dropped_frames"] = 5
    rows.loc[last, "reconnects"] = 1
    drawn = live_latency(rows, run.summary)
    assert drawn is not None
    figure = drawn.to_plotly_json()
    dropped = traces(figure)["frames dropped"]
    assert dropped["yaxis"] == "y2" and dropped["y"][1] == 5 and sum(dropped["y"]) == 5
    reconnects = [s for s in figure["layout"]["shapes"] if s.get("name") == "reconnect"]
    assert [s["x0"] for s in reconnects] == [pytest.approx(rows.loc[last, "step_start_s"])]


def test_an_async_run_shows_its_thread_plan_trial(tmp_path: Path, async_run: Path) -> None:
    summary = load_run(async_run).summary
    trial = summary["threads"].get("trial")
    if trial is None:
        pytest.skip("no thread-plan trial here (one core)")
    _, page = report(tmp_path, async_run)
    bars = page.figures["r1-trial"]["data"][0]
    assert bars["y"] == pytest.approx([c["fps"] for c in trial["candidates"]])
    shades = page.figures["r1-timeline"]["layout"]["shapes"]
    trial_shade = [(s["x0"], s["x1"]) for s in shades if s["name"] == "thread-plan trial steps"]
    first, count = trial["first_step"], trial["steps"]
    assert trial_shade == [(first - 0.5, first + count - 0.5)]
    # async: the producer's stages and the model's side stacked apart
    x = {name: t["x"] for name, t in traces(page.figures["r1-stages"], "bar").items()}
    assert x["decode"] == ["mean<br>producer", "p99<br>producer"] and x["exec"] == [
        "mean<br>model",
        "p99<br>model",
    ]


def test_findings_and_the_measured_what_if(tmp_path: Path, diagnosed_run: Path) -> None:
    text, page = report(tmp_path, diagnosed_run)
    assert_offline(text, page)
    # findings: escaped, with evidence and the fix as flags
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "oversubscribed" in text and "wait_share 0.193, threshold 0.1" in text
    assert "<code>--torch-threads 1</code>" in text
    # tune.json: every trial in the table, the failed one with its error; the chart with intervals around 1.0
    for trial in TUNE["trials"]:
        assert trial["verdict"] in text
    assert "out of memory at batch size 64" in text and "×1.210 [1.120, 1.300]" in text
    assert "100.0 (median of 3)" in text and "--decoder pyav --use-amp" in text and "3 interleaved" in text
    point = page.figures["r1-tune"]["data"][0]
    assert point["y"] == ["oversubscribed", "decode_bound", "recommended"]  # the failed trial has no point
    assert point["x"] == [1.21, 0.99, 1.21]
    assert point["error_x"]["array"] == pytest.approx([0.09, 0.05, 0.09])
    assert point["error_x"]["arrayminus"] == pytest.approx([0.09, 0.04, 0.09])
    assert [s["x0"] for s in page.figures["r1-tune"]["layout"]["shapes"]] == [1.0]


def test_a_tune_json_that_cannot_be_read_is_said_in_the_page(tmp_path: Path, sync_run: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(sync_run, run_dir)
    (run_dir / "tune.json").write_text('{"trials": [')
    text, page = report(tmp_path, run_dir)
    assert "tune.json could not be read" in text and "r1-tune" not in page.figures
    assert "r1-timeline" in page.figures


def test_a_killed_run_is_reported_from_its_rows(tmp_path: Path, sync_run: Path) -> None:
    run_dir = tmp_path / "killed"
    shutil.copytree(sync_run, run_dir)
    (run_dir / "summary.json").unlink()
    text, page = report(tmp_path, run_dir)
    assert 'class="badge incomplete"' in text and "not diagnosed" in text
    assert "r1-stages" in page.figures and "r1-timeline" in page.figures


def test_a_run_killed_before_its_first_step_still_gets_a_page(tmp_path: Path, sync_run: Path) -> None:
    run_dir = tmp_path / "empty"
    shutil.copytree(sync_run, run_dir)
    (run_dir / "summary.json").unlink()
    csv = next(run_dir.glob("M_*_metrics.csv"))
    csv.write_text(csv.read_text().splitlines()[0] + "\n")
    text, page = report(tmp_path, run_dir)
    assert "no steps were recorded" in text and page.figures == {}


# --- several runs -----------------------------------------------------------------------------------------


def test_two_runs_are_compared_side_by_side(tmp_path: Path, sync_run: Path, async_run: Path) -> None:
    first, second = load_run(sync_run), load_run(async_run)
    text, page = report(tmp_path, sync_run, async_run)
    assert_offline(text, page)
    bars = traces(page.figures["compare-stages"], "bar")
    assert list(bars) == ["#1 sync", "#2 async"]
    assert bars["#1 sync"]["y"][bars["#1 sync"]["x"].index("exec")] == pytest.approx(
        first.summary["stages"]["exec_latency_ms"]["mean_ms"]
    )
    ratio = stats.ratio_of_medians(
        steady_rows(first.rows)["fps"].tolist(), steady_rows(second.rows)["fps"].tolist()
    )
    assert f"×{ratio.value:.2f} [{ratio.low:.2f}, {ratio.high:.2f}]" in text and "baseline" in text
    # each run's own section below, with its own chart ids
    assert {"r1-timeline", "r2-timeline", "r1-stages", "r2-stages"} <= set(page.figures)
    assert text.index('id="comparison"') < text.index('id="r1"') < text.index('id="r2"')


# --- the command line -------------------------------------------------------------------------------------


def test_the_command_writes_report_html_in_the_run_directory(sync_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(sync_run, run_dir)
    done = run_cli("report", str(run_dir))
    assert done.code == 0, done.err
    assert (run_dir / "report.html").stat().st_size > 1_000_000  # plotly.js is in it
    assert done.out.startswith(f"wrote {run_dir / 'report.html'} (1 run(s)")
    done = run_cli("report", str(run_dir), str(run_dir), "-o", str(tmp_path / "sub" / "both.html"))
    assert done.code == 0, done.err
    assert (tmp_path / "sub" / "both.html").exists()


def bad_inputs(tmp_path: Path, run_dir: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input: (the arguments, the start of the one line it gets)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "file.txt"
    afile.write_text("not a run")
    parent = tmp_path / "parent"
    parent.mkdir()
    shutil.copytree(run_dir, parent / "one")
    out = str(tmp_path / "r.html")
    return {
        "missing": ([str(tmp_path / "nope"), "-o", out], "run directory"),
        "empty directory": ([str(empty), "-o", out], f"'{empty}' holds no M_*_P_*_metrics.csv"),
        "a file": ([str(afile), "-o", out], f"'{afile}' is a file, not a run directory"),
        "a directory of runs": ([str(parent), "-o", out], f"'{parent}' holds 1 run directories"),
        "output is a directory": ([str(run_dir), "-o", str(tmp_path)], f"'{tmp_path}' is a directory"),
        "output under a file": (
            [str(run_dir), "-o", str(afile / "r.html")],
            f"cannot write the report '{afile / 'r.html'}'",
        ),
        "several runs without -o": ([str(run_dir), str(run_dir)], "2 runs make a comparison; pass -o FILE"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty directory",
        "a file",
        "a directory of runs",
        "output is a directory",
        "output under a file",
        "several runs without -o",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, sync_run: Path) -> None:
    args, start = bad_inputs(tmp_path, sync_run)[case]
    done = run_cli("report", *args)
    assert done.code == 2, done.err
    assert done.out == ""
    assert len(done.err.strip().splitlines()) == 1
    assert done.err.startswith(f"framescope: error: {start}"), done.err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_an_unwritable_directory_is_one_line_and_exit_2(tmp_path: Path, sync_run: Path) -> None:
    """Permission bits, for real: as root, in a process without the capabilities that bypass them."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o555)
    output = locked / "report.html"
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "framescope", "report", str(sync_run), "-o", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"framescope: error: cannot write the report '{output}' (Permission denied); pass -o with a "
        "writable path."
    )
    assert list(locked.iterdir()) == []


# --- stats used by the report -----------------------------------------------------------------------------


def test_box_stats() -> None:
    box = stats.box_stats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0])
    assert (box.q1, box.median, box.q3) == (3.0, 5.0, 7.0)
    assert (box.low, box.high, box.outliers, box.count) == (1.0, 8.0, (100.0,), 9)
    one = stats.box_stats([2.5])
    assert (one.q1, one.median, one.q3, one.low, one.high, one.outliers) == (2.5, 2.5, 2.5, 2.5, 2.5, ())
    with pytest.raises(ValueError, match="at least one value"):
        stats.box_stats([])


# --- a real browser ---------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("FRAMESCOPE_ARTIFACTS") or Path(__file__).parent / "artifacts")


@pytest.fixture
def browser() -> str:
    """Chromium, or a skip (locally) or failure (in CI) before any run is made for the test."""
    needs_system_dependency(CHROMIUM is not None, "chromium (headless, for the HTML report)")
    assert CHROMIUM is not None
    return CHROMIUM


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` (a file), with nothing in the background and no host name resolving."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=15000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def page_requests(net_log: Path) -> list[str]:
    """The URLs the page asked the network stack for, from Chromium's NetLog: requests made for the page
    have the file:// page as their top-level site; the browser's own (update checks and the like, which
    these flags do not all silence) do not."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start_job or "url" not in params:
            continue
        site = f"{params.get('network_isolation_key', '')} {params.get('site_for_cookies', '')}"
        if "file://" in site or str(params.get("initiator", "")).startswith("file://"):
            urls.append(params["url"])
    return urls


class RenderedCharts(HTMLParser):
    """In the DOM after scripts ran: how many plotly ``main-svg`` elements each chart div holds."""

    def __init__(self, chart_ids: set[str]) -> None:
        super().__init__()
        self.chart_ids = chart_ids
        self.svgs: dict[str, int] = dict.fromkeys(chart_ids, 0)
        self._open: list[str | None] = []  # the chart each open div belongs to

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        inside = next((c for c in reversed(self._open) if c), None)
        if tag == "div":
            self._open.append(attributes.get("id") if attributes.get("id") in self.chart_ids else inside)
        if tag == "svg" and "main-svg" in (attributes.get("class") or "").split() and inside:
            self.svgs[inside] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._open:
            self._open.pop()


def browser_check(tmp_path: Path, page: Path) -> tuple[str, list[str]]:
    net_log = tmp_path / "netlog.json"
    done = chromium(page, tmp_path / "profile", f"--log-net-log={net_log}", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, page_requests(net_log)


def assert_draws_offline(tmp_path: Path, page: Path, screenshot_name: str, height: int = 2400) -> set[str]:
    """Every chart of ``page`` renders in headless Chromium with no network request, and a screenshot of it
    lands in ARTIFACTS (to look at); returns the charts' ids."""
    charts = set(Page(page.read_text()).figures)
    dom, requests = browser_check(tmp_path, page)
    rendered = RenderedCharts(charts)
    rendered.feed(dom)
    assert {c: n for c, n in rendered.svgs.items() if n == 0} == {}, "charts that did not render"
    assert [url for url in requests if url.startswith(("http:", "https:"))] == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / screenshot_name
    screenshot.unlink(missing_ok=True)
    done = chromium(
        page, tmp_path / "profile-2", f"--screenshot={screenshot}", f"--window-size=1400,{height}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return charts


@pytest.mark.slow
@pytest.mark.usefixtures("browser")
def test_the_page_check_sees_a_network_fetch(tmp_path: Path) -> None:
    """The check below is real: a page that loads one image from the network is caught."""
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><img src="http://example.invalid/a.png"><p id="x">ran</p></body></html>')
    dom, requests = browser_check(tmp_path, page)
    assert 'id="x">ran' in dom
    assert requests == ["http://example.invalid/a.png"]


@pytest.mark.slow
def test_chromium_draws_every_chart_offline(
    browser: str, tmp_path: Path, live_run: Path, diagnosed_run: Path, async_run: Path
) -> None:
    path = write_report([live_run, diagnosed_run, async_run], tmp_path / "report.html")
    charts = set(Page(path.read_text()).figures)
    expected = {"compare-stages", "r1-live", "r2-tune"} | {
        f"r{i}-{k}" for i in (1, 2, 3) for k in ("stages", "timeline", "distributions")
    }
    assert expected <= charts

    dom, requests = browser_check(tmp_path, path)
    rendered = RenderedCharts(charts)
    rendered.feed(dom)
    assert {c: n for c, n in rendered.svgs.items() if n == 0} == {}, "charts that did not render"
    assert dom.count('class="main-svg"') >= len(charts)
    assert [url for url in requests if url.startswith(("http:", "https:"))] == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    done = chromium(path, tmp_path / "profile-2", f"--screenshot={screenshot}", "--window-size=1400,4000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert screenshot.stat().st_size > 50_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steady_rows_follow_the_summary(sync_run: Path) -> None:
    run = load_run(sync_run)
    assert len(steady_rows(run.rows)) == run.summary["steady_steps"]
    everything_warm = run.rows.assign(warmup=1)
    assert len(steady_rows(everything_warm)) == len(run.rows)  # the summary's rule: then all of them
    assert steady_rows(pd.DataFrame()).empty
