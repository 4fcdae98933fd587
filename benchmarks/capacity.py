"""Issue 12's capacity target, measured the way a user would meet it: through the command line.

* ``framescope capacity --model-name mobilenet_v3_small --input_path sample: --source-fps 10
  --p99-budget-ms 200`` finishes in under 10 minutes with an answer N;
* the answer holds when checked apart from the search: an ordinary ``framescope run`` of N replayed cameras
  (``--cameras N --source-fps 10 --loop --batching dynamic --max-batch N --deadline-ms 200``) meets the
  budget (p99 within 200 ms, at most 1 % dropped), and one of round(1.5 N) cameras does not.

Each check run (``framescope.run`` with the same settings as the command line's) is stopped by an observer
``--check-seconds`` after its first step. Its verdict uses the run's own summary: ``sources.overall`` (every
frame's latency against ``--deadline-ms``, and the drops).

    python benchmarks/capacity.py              # results in benchmarks/results/capacity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import framescope
from framescope.config import MALLOC_MODES

RESULTS = Path(__file__).parent / "results"
FRAMESCOPE = [sys.executable, "-m", "framescope"]
LIMIT_S = 600.0
TRIAL_KEYS = ("cameras", "max_batch", "verdict", "confident", "p99_ms", "late_share", "drop_share", "frames",
              "seconds")  # fmt: skip


def run(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    print(f"$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done, time.perf_counter() - start


class StopAfter(framescope.RunObserver):
    """Ends a run ``seconds`` after its first step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None

    def on_step(self, row: Any) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def stop_requested(self) -> bool:
        return self.started is not None and time.monotonic() - self.started >= self.seconds


def check(args: argparse.Namespace, cameras: int, batch: int, work: Path, name: str) -> dict[str, Any]:
    """An ordinary run of ``cameras`` replayed cameras for ``--check-seconds``, judged on its summary."""
    config = framescope.RunConfig.from_flat(
        model_name=args.model, input_path=args.input, source_fps=args.fps, loop=True, cameras=cameras,
        batching="dynamic", max_batch=batch, deadline_ms=args.budget, progress="none",
        output_dir=str(work), run_name=name, malloc=args.malloc,
    )  # fmt: skip
    print(f"check: {cameras} cameras, --max-batch {batch}, {args.check_seconds:g} s", flush=True)
    start = time.perf_counter()
    result = framescope.run(config, observer=StopAfter(args.check_seconds))
    overall = result.summary["sources"]["overall"]
    late = overall["frames"] - overall["on_time_frames"]
    published = overall["frames"] + overall["dropped"]
    late_share, drop_share = late / overall["frames"], overall["dropped"] / published
    return {
        "cameras": cameras,
        "max_batch": batch,
        "frames": overall["frames"],
        "dropped": overall["dropped"],
        "p50_ms": overall["latency_p50_ms"],
        "p99_ms": overall["latency_p99_ms"],
        "late_share": late_share,
        "drop_share": drop_share,
        "meets_budget": overall["latency_p99_ms"] <= args.budget and drop_share <= 0.01,
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--input", default="sample:")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--budget", type=float, default=200.0)
    parser.add_argument("--check-seconds", type=float, default=40.0)
    parser.add_argument(
        "--malloc", choices=MALLOC_MODES, default="default",
        help="the allocator setting of the search and of both checks (README: Memory allocator)",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="framescope-capacity-"))
    done, seconds = run(
        [*FRAMESCOPE, "capacity", "--model-name", args.model, "--input_path", args.input, "--source-fps",
         f"{args.fps:g}", "--p99-budget-ms", f"{args.budget:g}", "--output-dir", str(work), "--run-name",
         "search", "--json", "--report", "--malloc", args.malloc]
    )  # fmt: skip
    print(done.stderr, end="")
    if done.returncode != 0:
        print(f"capacity failed with exit code {done.returncode}")
        return 1
    report = json.loads(done.stdout)
    answer = report["cameras"]
    batch = (report.get("best_setting") or {}).get("max_batch") or max(answer, 1)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "python": platform.python_version(),
        "command": f"framescope capacity --model-name {args.model} --input_path {args.input} --source-fps "
        f"{args.fps:g} --p99-budget-ms {args.budget:g} --malloc {args.malloc}",
        "search_seconds": seconds,
        "answer": answer,
        "first_failed": report["first_failed"],
        "trials": [{key: trial.get(key) for key in TRIAL_KEYS} for trial in report["trials"]],
        "decode": report.get("decode"),
        "limit": report.get("limit"),
        "notes": report.get("notes"),
    }
    verdicts = {"search_under_10_min": seconds < LIMIT_S, "answer_found": answer >= 1}
    if answer >= 1:
        over = max(answer + 1, round(1.5 * answer))
        results["check_at_answer"] = at = check(args, answer, batch, work, "at-answer")
        results["check_at_1_5x"] = above = check(args, over, over, work, "at-1.5x")
        verdicts["answer_meets_budget"] = bool(at.get("meets_budget"))
        verdicts["1.5x_misses_budget"] = above.get("meets_budget") is False
    results["verdicts"] = verdicts
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    print(json.dumps({k: results[k] for k in ("answer", "first_failed", "search_seconds")}))
    for key in ("check_at_answer", "check_at_1_5x"):
        if key in results:
            print(key, json.dumps(results[key]))
    print(f"wrote {RESULTS / 'capacity.json'}; the search's directory: {work / 'search'}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
