"""What does framescope's instrumentation cost? ``framescope.run`` against a bare hand-written loop.

Both do the same work on the same clip in the same process: OpenCV decode and BGR->RGB, stacking frames into
a uint8 batch, the same torchvision v2 transform, the same model under ``torch.inference_mode``, the same
post-processing (softmax and top 5). The bare loop has no spans, no NVTX, no CSV, no progress, no sampler.
Runs alternate (bare, framescope, bare, ...) so drift on a shared machine hits both alike; the result is the
ratio of median throughputs, plus the median of per-pair ratios.

framescope's time is taken from just before its first step to after its summary is written (observer
callbacks), so CSV writing, spans and summary are all inside it.

On a shared 2-core VM, two identical runs differ by up to 25 %, so one pair proves nothing: the benchmark
runs many short alternating rounds and reports the median of per-pair ratios with a bootstrap 95 % interval.
It also reports what framescope measures about itself inside one run, which run-to-run noise cannot touch:
the share of the loop's wall time spent outside any stage (spans, row building, CSV writes, summary).

Both loops give FFmpeg the same thread budget (one decode thread per core, framescope's default); OpenCV's own
default differs and would compare decoder settings instead of instrumentation.

    python benchmarks/overhead.py                    # the configurations in the README
    python benchmarks/overhead.py --rounds 7 --model-name resnet18 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import framescope
from framescope import RunConfig
from framescope._cv2 import import_cv2
from framescope.models import build_model, input_spec
from framescope.postprocess import classification_post
from framescope.preprocess import build_transform
from framescope.records import STAGE_COLUMNS
from framescope.sources import write_clip

RESULTS = Path(__file__).parent / "results"


def bare_loop(clip: Path, model_name: str, batch_size: int, level: str) -> tuple[int, float]:
    """The loop a user would write by hand. Returns (frames, seconds)."""
    cv2 = import_cv2()
    model = build_model(model_name).eval()
    transform = build_transform(level, input_spec(model_name, model))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, cores])
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    with torch.inference_mode():  # the same untimed dummy-batch warm-up framescope does
        model(transform(torch.zeros((batch_size, 3, height, width), dtype=torch.uint8)))
    frames = 0
    start = time.perf_counter()
    with torch.inference_mode():
        while True:
            images = []
            while len(images) < batch_size:
                ok, bgr = capture.read()
                if not ok:
                    break
                images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if not images:
                break
            batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
            classification_post(model(transform(batch)))
            frames += len(images)
    elapsed = time.perf_counter() - start
    capture.release()
    return frames, elapsed


def bootstrap_median_ci(values: list[float], resamples: int = 5000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    data = np.asarray(values)
    medians = np.median(rng.choice(data, size=(resamples, data.size), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


class Stopwatch(framescope.RunObserver):
    def on_start(self, info: framescope.StartInfo) -> None:
        self.started = time.perf_counter()

    def on_finish(self, result: framescope.RunResult) -> None:
        self.finished = time.perf_counter()


def framescope_loop(
    clip: Path, model_name: str, batch_size: int, level: str, out_dir: Path
) -> tuple[int, float, float]:
    """Returns (frames, seconds, share of the loop's wall time outside every stage)."""
    config = RunConfig.from_flat(
        model_name=model_name,
        input_path=str(clip),
        batch_size=batch_size,
        prep_level=level,
        output_dir=str(out_dir),
        progress="none",
    )
    watch = Stopwatch()
    result = framescope.run(config, observer=watch)
    seconds = watch.finished - watch.started
    stage_columns = [c for c in STAGE_COLUMNS.values() if result.rows[c].notna().any()]
    stages = result.rows[stage_columns].sum().sum() / 1000.0
    return int(result.summary["frames"]), seconds, 1.0 - stages / seconds


def measure(
    clip: Path, model_name: str, *, batch_size: int, level: str, rounds: int, out_dir: Path
) -> dict[str, Any]:
    bare, framed, outside = [], [], []
    for index in range(rounds):
        # alternate which goes first, so neither always runs on a warmer machine
        order = ("bare", "framescope") if index % 2 == 0 else ("framescope", "bare")
        for kind in order:
            if kind == "bare":
                frames, seconds = bare_loop(clip, model_name, batch_size, level)
                bare.append(frames / seconds)
            else:
                frames, seconds, share = framescope_loop(clip, model_name, batch_size, level, out_dir)
                framed.append(frames / seconds)
                outside.append(share)
    pair_ratios = [f / b for f, b in zip(framed, bare, strict=True)]
    low, high = bootstrap_median_ci(pair_ratios)
    return {
        "model": model_name,
        "batch_size": batch_size,
        "prep_level": level,
        "rounds": rounds,
        "bare_fps": bare,
        "framescope_fps": framed,
        "bare_median_fps": statistics.median(bare),
        "framescope_median_fps": statistics.median(framed),
        "ratio_of_medians": statistics.median(framed) / statistics.median(bare),
        "median_pair_ratio": statistics.median(pair_ratios),
        "median_pair_ratio_ci95": [low, high],
        "outside_stages_share_median": statistics.median(outside),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--model-name", action="append", help="repeatable; default: mobilenet_v3_small, resnet18"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prep-level", default="medium")
    parser.add_argument("--frames", type=int, default=160, help="length of the generated 640x360 clip")
    args = parser.parse_args(argv)
    models = args.model_name or ["mobilenet_v3_small", "resnet18"]
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="framescope-bench-") as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", width=640, height=360, frames=args.frames, fps=30)
        results = []
        for model_name in models:
            row = measure(
                clip,
                model_name,
                batch_size=args.batch_size,
                level=args.prep_level,
                rounds=args.rounds,
                out_dir=Path(tmp) / "runs",
            )
            results.append(row)
            low, high = row["median_pair_ratio_ci95"]
            print(
                f"{model_name} batch {args.batch_size} {args.prep_level}, {args.rounds} rounds: "
                f"bare {row['bare_median_fps']:.1f} FPS, framescope {row['framescope_median_fps']:.1f} FPS; "
                f"median pair ratio {row['median_pair_ratio']:.3f} (95% CI {low:.3f}-{high:.3f}); "
                f"framescope time outside stages {100 * row['outside_stages_share_median']:.2f}%",
                flush=True,
            )
    from framescope.instrument import system

    report = {"machine": system.collect(), "clip": f"640x360 H.264, {args.frames} frames", "results": results}
    (RESULTS / "overhead.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'overhead.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
