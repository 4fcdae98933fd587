"""How much faster a well-built pipeline is than the seed's naive loop, measured side by side in one run.

On one 1080p H.264 clip, batch 8, in alternating rounds:

* mobilenet_v3_small: the seed-style naive loop (OpenCV read, per-frame ToTensor / Resize to 224x224 /
  Normalize, model, all serial) against a ladder of framescope configurations doing the same work (the
  ``simple`` level: resize to 224x224, scale, normalise), ending with ``--pipeline async`` and the best
  decoder (PyAV resizing while decoding). Target: async >= 2.5x the naive loop.
* resnet50: ``--pipeline async`` on the clip against the model's own throughput on synthetic input (no
  decoding at all). Target: >= 0.85x.

Every throughput is frames / wall time of the loop over the clip (set-up and the untimed warm-up excluded,
the recorded warm-up steps included), so the naive loop and framescope are timed alike.

    python benchmarks/pipeline.py            # results in benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
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
from framescope.models import build_model
from framescope.preprocess import IMAGENET_MEAN, IMAGENET_STD
from framescope.sources import write_clip

RESULTS = Path(__file__).parent / "results"


def naive_loop(clip: Path, model_name: str, batch_size: int) -> float:
    """The seed's worker, as people write it: read a frame, transform it alone, batch, run. Returns FPS."""
    from torchvision import transforms

    cv2 = import_cv2()
    model = build_model(model_name).eval()
    transform = transforms.Compose(
        [
            transforms.ToTensor(),
            transforms.Resize((224, 224)),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    with torch.inference_mode():
        model(torch.zeros(batch_size, 3, 224, 224))  # the same untimed warm-up framescope does
    capture = cv2.VideoCapture(str(clip))
    frames = 0
    started = time.perf_counter()
    with torch.inference_mode():
        while True:
            batch = []
            while len(batch) < batch_size:
                ok, bgr = capture.read()
                if not ok:
                    break
                batch.append(transform(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            if not batch:
                break
            model(torch.stack(batch))
            frames += len(batch)
    capture.release()
    return frames / (time.perf_counter() - started)


class Stopwatch(framescope.RunObserver):
    def on_start(self, info: framescope.StartInfo) -> None:
        self.started = time.perf_counter()

    def on_finish(self, result: framescope.RunResult) -> None:
        self.seconds = time.perf_counter() - self.started


def framescope_fps(out_dir: Path, **flat: Any) -> tuple[float, dict[str, Any]]:
    watch = Stopwatch()
    result = framescope.run(
        RunConfig.from_flat(output_dir=str(out_dir), progress="none", **flat), observer=watch
    )
    return result.summary["frames"] / watch.seconds, result.summary


def ladder(clip: Path, out_dir: Path, batch_size: int) -> dict[str, dict[str, Any]]:
    common = {
        "model_name": "mobilenet_v3_small",
        "input_path": str(clip),
        "batch_size": batch_size,
        "prep_level": "simple",  # the naive loop's work: resize to 224x224, scale, normalise
    }
    return {
        "naive loop (seed style)": {},
        "framescope sync, opencv (the seed's decoder)": {**common, "decoder": "opencv"},
        "framescope sync, pyav --decode-size auto": {**common, "decoder": "pyav", "decode_size": "auto"},
        "framescope async, pyav --decode-size auto": {
            **common,
            "decoder": "pyav",
            "decode_size": "auto",
            "pipeline": "async",
        },
        "  ... and --decode-threads 2 (oversubscribes)": {
            **common,
            "decoder": "pyav",
            "decode_size": "auto",
            "pipeline": "async",
            "decode_threads": 2,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=240, help="length of the generated 1080p clip")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="framescope-bench-") as tmp:
        out = Path(tmp) / "runs"
        clip = write_clip(Path(tmp) / "clip1080.mp4", width=1920, height=1080, frames=args.frames, fps=30)
        steps = ladder(clip, out, args.batch_size)
        fps: dict[str, list[float]] = {name: [] for name in steps}
        resnet: dict[str, list[float]] = {
            "synthetic input, sync": [],
            "clip, async, pyav --decode-size auto": [],
        }
        notes: list[str] = []
        for index in range(args.rounds):
            order = list(steps) if index % 2 == 0 else list(reversed(steps))
            for name in order:
                if not steps[name]:
                    fps[name].append(naive_loop(clip, "mobilenet_v3_small", args.batch_size))
                else:
                    fps[name].append(framescope_fps(out, **steps[name])[0])
            heavy = {"model_name": "resnet50", "batch_size": args.batch_size, "max_steps": 12}
            resnet["synthetic input, sync"].append(
                framescope_fps(out, input_path="synthetic:1920x1080", **heavy)[0]
            )
            value, summary = framescope_fps(
                out, input_path=str(clip), decoder="pyav", decode_size="auto", pipeline="async", **heavy
            )
            resnet["clip, async, pyav --decode-size auto"].append(value)
            notes = summary["threads"]["notes"]
            print(f"round {index + 1}/{args.rounds} done", flush=True)
    naive = fps["naive loop (seed style)"]
    print(f"\nmobilenet_v3_small, 1080p H.264, batch {args.batch_size}, {args.rounds} rounds (median FPS):")
    for name, values in fps.items():
        ratio = statistics.median(v / n for v, n in zip(values, naive, strict=True))
        print(f"  {name:46} {statistics.median(values):7.1f} FPS   {ratio:5.2f}x the naive loop")
    synthetic = resnet["synthetic input, sync"]
    print(f"\nresnet50, batch {args.batch_size}:")
    for name, values in resnet.items():
        ratio = statistics.median(v / s for v, s in zip(values, synthetic, strict=True))
        print(f"  {name:46} {statistics.median(values):7.2f} FPS   {ratio:5.2f}x synthetic input")
    for note in notes:
        print(f"  ({note})")
    from framescope.instrument import system

    report = {
        "machine": system.collect(),
        "clip": f"1920x1080 H.264, {args.frames} frames",
        "batch_size": args.batch_size,
        "mobilenet_v3_small_fps": fps,
        "resnet50_fps": resnet,
        "resnet50_thread_notes": notes,
    }
    (RESULTS / "pipeline.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    sys.exit(main())
