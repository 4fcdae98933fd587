"""Issue 9's sweep target, measured the way a user would meet it: through the command line.

* resnet18 on a generated 640x360 H.264 clip, ``framescope sweep --batch-size 1,2,4,8,16,32,64``: the sweep
  finishes with a valid sweep.csv (one row per point, every point ``ok``, i.e. stable), and
  ``framescope report SWEEP_DIR`` writes a report whose charts all render in headless Chromium (where
  Chromium is installed).

Each point runs until its rate is stable (three consecutive 5-step windows within 10 %, at least 20 steps,
at most 60 s of stepping), one round; the numbers are each point's steady-state FPS and step latencies from
its own summary.json, as sweep.csv holds them.

    python benchmarks/sweep.py                # results in benchmarks/results/sweep.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from framescope.sources import write_clip

RESULTS = Path(__file__).parent / "results"
FRAMESCOPE = [sys.executable, "-m", "framescope"]
BATCHES = "1,2,4,8,16,32,64"


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    print(f"$ {shlex.join(command)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def charts_rendered(report: Path, work: Path) -> dict[str, int] | None:
    """Each chart div's plotly ``main-svg`` count in the DOM headless Chromium built; None without it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={work / 'profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip
    ids = re.findall(r'<div id="([^"]+)" class="fs-chart"', report.read_text())
    counts = {}
    for chart_id in ids:
        start = done.stdout.find(f'id="{chart_id}"')
        end = min((done.stdout.find(f'id="{other}"') for other in ids if other != chart_id
                   and done.stdout.find(f'id="{other}"') > start), default=len(done.stdout))  # fmt: skip
        counts[chart_id] = done.stdout[start:end].count('class="main-svg"') if start >= 0 else 0
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1800, help="length of the clip (default: 1800)")
    parser.add_argument("--keep", type=Path, help="keep the clip and the sweep directory here")
    parser.add_argument(
        "--torch-threads",
        help="pass --torch-threads to the sweep (on a machine shared with other work, 1 keeps OpenMP from "
        "spinning against it); default: the run's own default",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="framescope-sweep-") as tmp:
        work = options.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clip = write_clip(work / "360p.mp4", width=640, height=360, frames=options.frames, fps=30)
        command = [*FRAMESCOPE, "sweep", "--model-name", "resnet18", "--input_path", str(clip),
                   "--batch-size", BATCHES, "--output-dir", str(work / "sweeps"), "--json"]  # fmt: skip
        if options.torch_threads:
            command += ["--torch-threads", options.torch_threads]
        started = time.monotonic()
        done = run(command)
        seconds = time.monotonic() - started
        print(done.stderr, end="")
        report = json.loads(done.stdout)
        sweep_dir = Path(report["sweep_dir"])
        with (sweep_dir / "sweep.csv").open() as file:
            rows = list(csv.DictReader(file))
        run([*FRAMESCOPE, "report", str(sweep_dir)])
        rendered = charts_rendered(sweep_dir / "report.html", work)
    keep = ("batch_size", "status", "stable_rounds", "steady_fps", "step_p50_ms", "step_p99_ms",
            "read_latency_ms", "decode_latency_ms", "prep_latency_ms", "exec_latency_ms", "post_latency_ms",
            "host_peak_mb")  # fmt: skip
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "clip": f"640x360 H.264, {options.frames} frames",
        "command": shlex.join(["framescope", *command[3:]]),
        "wall_time_s": round(seconds, 1),
        "points": [{k: row.get(k) for k in keep} for row in rows],
        "best": report["best"],
        "knee": report["knee"],
        "knee_note": report["knee_note"],
        "pareto_front": report["pareto_front"],
        "notes": report["notes"],
        "charts_rendered": rendered,
        "met": len(rows) == 7
        and all(row["status"] == "ok" for row in rows)
        and (rendered is None or all(count > 0 for count in rendered.values())),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    for point in results["points"]:
        print(
            f"batch {point['batch_size']:>3}: {point['status']:<8} {float(point['steady_fps']):7.1f} FPS  "
            f"p50 {float(point['step_p50_ms']):8.1f} ms  p99 {float(point['step_p99_ms']):8.1f} ms"
        )
    print(f"{'met' if results['met'] else 'NOT MET'} in {seconds:.0f} s; charts rendered: {rendered}")


if __name__ == "__main__":
    main()
