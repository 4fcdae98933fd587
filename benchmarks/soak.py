"""A long live run: does framescope hold steady for half an hour on a camera-like input?

A generated H.264 clip long enough for the whole soak is replayed as a live camera (``--source-fps``, the
same reader, buffer, drop and due-time logic as a real camera), and ``framescope.run`` processes it for
``--minutes``. While it runs, an observer samples the process's resident memory every ``--sample-s``
seconds; afterwards the run's own CSV gives per-frame latency, cut into ``--window-min``-minute windows.

What must hold (printed as PASS/FAIL, and recorded in ``benchmarks/results/soak.json``):

* memory: resident memory grows by at most 50 MB from the end of the first ``--settle-min`` minutes to the
  end of the run;
* latency: no window's p99 latency is more than 1.5x the first window's (no drift);
* records: the CSV holds every step the observer saw, and the steps account for every frame published
  (processed + dropped).

    python benchmarks/soak.py --minutes 30                # the README's figures
    python benchmarks/soak.py --minutes 2 --window-min 0.5 --settle-min 0.5   # a quick look
    python benchmarks/soak.py --minutes 20 --malloc retain --batching dynamic --max-batch 8 --cameras 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

import framescope
from framescope import RunConfig
from framescope.config import BATCHING_MODES, MALLOC_MODES
from framescope.records import load_run
from framescope.records._summary import frame_latencies
from framescope.sources import write_clip

RESULTS = Path(__file__).parent / "results"
MEMORY_GROWTH_LIMIT_MB = 50.0
DRIFT_LIMIT = 1.5


class MemoryWatch(framescope.RunObserver):
    """Samples resident memory between steps, at most every ``every_s`` seconds."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.process = psutil.Process()
        self.samples: list[tuple[float, float]] = []
        self.steps = 0
        self._start = 0.0
        self._next = 0.0

    def on_start(self, info: framescope.StartInfo) -> None:
        self._start = time.perf_counter()
        self._next = self._start

    def on_step(self, row: dict[str, Any]) -> None:
        self.steps += 1
        now = time.perf_counter()
        if now >= self._next:
            self.samples.append((now - self._start, self.process.memory_info().rss / 2**20))
            self._next = now + self.every_s


def windows(rows: pd.DataFrame, minutes: float) -> list[dict[str, Any]]:
    """Latency percentiles and drops per window of ``minutes`` of run time."""
    out = []
    width = minutes * 60.0
    index = (rows["step_start_s"] // width).astype(int)
    for number, part in rows.groupby(index):
        latencies = frame_latencies(part)
        out.append(
            {
                "window": int(number),
                "from_min": number * minutes,
                "steps": len(part),
                "frames": int(part["frames"].sum()),
                "dropped": int(part["dropped_frames"].fillna(0).sum()),
                "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else None,
                "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=30.0, help="the replayed camera's frame rate")
    parser.add_argument("--model-name", default="mobilenet_v3_small")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pipeline", default="sync")
    parser.add_argument(
        "--batching", choices=BATCHING_MODES, default="fixed",
        help="dynamic: batches of whatever has arrived, up to --max-batch (batch sizes vary step to step)",
    )  # fmt: skip
    parser.add_argument("--max-batch", type=int, help="--batching dynamic: the largest batch")
    parser.add_argument("--cameras", type=int, default=1, help="replicas of the replayed camera")
    parser.add_argument("--malloc", choices=MALLOC_MODES, default="default")
    parser.add_argument("--size", default="640x360", help="frame size of the generated clip")
    parser.add_argument("--window-min", type=float, default=5.0, help="latency window, minutes")
    parser.add_argument("--settle-min", type=float, default=2.0, help="memory baseline after this long")
    parser.add_argument("--sample-s", type=float, default=10.0, help="memory sampling interval")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    frames = int(args.minutes * 60 * args.fps) + int(args.fps * 5)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="framescope-soak-") as tmp:
        started = time.perf_counter()
        clip = write_clip(
            Path(tmp) / "soak.mp4", width=width, height=height, frames=frames, fps=int(args.fps)
        )
        print(f"wrote a {frames}-frame {args.size} clip in {time.perf_counter() - started:.0f} s", flush=True)
        watch = MemoryWatch(args.sample_s)
        result = framescope.run(
            RunConfig.from_flat(
                model_name=args.model_name,
                input_path=str(clip),
                source_fps=args.fps,
                batch_size=args.batch_size,
                pipeline=args.pipeline,
                malloc=args.malloc,
                batching=args.batching,
                max_batch=args.max_batch,
                cameras=args.cameras,
                # dynamic batches vary in size: run until the clip (minutes + 5 s) has been replayed
                max_steps=None
                if args.batching == "dynamic"
                else int(args.minutes * 60 * args.fps * args.cameras / args.batch_size),
                output_dir=str(Path(tmp) / "runs"),
                progress="none",
            ),
            observer=watch,
        )
        rows = load_run(result.run_dir).rows
    memory = np.array(watch.samples)
    settled = memory[memory[:, 0] >= args.settle_min * 60.0]
    growth = float(settled[-1, 1] - settled[0, 1]) if len(settled) > 1 else 0.0
    per_window = windows(rows, args.window_min)
    p99 = [w["latency_p99_ms"] for w in per_window if w["latency_p99_ms"] is not None]
    drift = max(p99) / p99[0] if p99 else None
    live = result.summary.get("live", {})
    frames_seen = int(rows["frames"].sum()) + int(rows["dropped_frames"].fillna(0).sum())
    checks = {
        "memory_growth_mb": (growth, growth <= MEMORY_GROWTH_LIMIT_MB),
        "p99_drift_ratio": (drift, drift is not None and drift <= DRIFT_LIMIT),
        "csv_rows_equal_steps": ((len(rows), watch.steps), len(rows) == watch.steps),
    }
    report = {
        "machine": result.system,
        "settings": vars(args),
        "status": result.status,
        "steady_fps": result.summary.get("steady_fps"),
        "live": live,
        "frames_processed_plus_dropped": frames_seen,
        "memory_mb": [[round(t, 1), round(m, 1)] for t, m in watch.samples],
        "windows": per_window,
        "checks": {name: {"value": value, "pass": ok} for name, (value, ok) in checks.items()},
    }
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        f"{args.model_name}, {args.size} replayed at {args.fps:g} FPS for {args.minutes:g} min: "
        f"{result.status}"
    )
    print(
        f"resident memory (MB) every ~{args.sample_s:g} s: first {memory[0, 1]:.0f}, "
        f"at {args.settle_min:g} min {settled[0, 1] if len(settled) else float('nan'):.0f}, "
        f"last {memory[-1, 1]:.0f}, max {memory[:, 1].max():.0f}"
    )
    print(f"{'window':>8} {'steps':>7} {'dropped':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for w in per_window:
        print(
            f"{w['from_min']:>6g}m+ {w['steps']:>7} {w['dropped']:>8} {w['latency_p50_ms'] or 0:>8.1f} "
            f"{w['latency_p99_ms'] or 0:>8.1f}"
        )
    for name, (value, ok) in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}: {value}")
    print(f"wrote {RESULTS / 'soak.json'}")
    return 0 if all(ok for _, ok in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
