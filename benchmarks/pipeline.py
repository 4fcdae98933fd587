"""How the pipelines compare, side by side in one run, in alternating rounds, on one 1080p H.264 clip.

* mobilenet_v3_small against the seed-style naive loop (OpenCV read, per-frame ToTensor / Resize to 224x224 /
  Normalize, model, all serial), every framescope configuration doing the same work (``--prep-level simple``).
  Target: the async pipeline with defaults >= 2.5x the naive loop.
* For mobilenet_v3_small and resnet50, with each decoder (OpenCV, PyAV, PyAV resizing while decoding,
  torchcodec where its libraries load): ``--pipeline sync`` against ``--pipeline async``, default flags
  otherwise (so the async runs measure and pick their thread plan). Target: async never slower than sync.
* resnet50 (``--prep-level medium``) on the clip against the model alone (``synthetic:1920x1080``: the same
  preprocessing, no decoding). Target: >= 0.85x with every decoder that decodes faster than the model runs;
  each decoder's own rate is measured from the sync runs' read + decode times.

Two throughputs are recorded per run: the steady-state FPS framescope reports (warm-up and thread-trial steps
left out), which the sync/async and model-alone targets use, and frames over the wall time of the whole loop
(set-up and the untimed warm-up excluded, every recorded step included), which the naive-loop target uses
because the naive loop has no warm-up to leave out.

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


def decoders() -> dict[str, dict[str, Any]]:
    from framescope.sources._torchcodec import torchcodec_problem

    found = {
        "opencv": {"decoder": "opencv"},
        "pyav": {"decoder": "pyav"},
        "pyav --decode-size auto": {"decoder": "pyav", "decode_size": "auto"},
    }
    if torchcodec_problem() is None:
        found["torchcodec"] = {"decoder": "torchcodec"}
        found["torchcodec --decode-size auto"] = {"decoder": "torchcodec", "decode_size": "auto"}
    return found


def configurations(clip: Path, batch_size: int) -> dict[str, dict[str, dict[str, Any] | None]]:
    """model -> configuration name -> flat settings (None: the naive loop)."""
    plans: dict[str, dict[str, dict[str, Any] | None]] = {}
    for model, level, baseline in (
        ("mobilenet_v3_small", "simple", ("naive loop (seed style)", None)),
        (
            "resnet50",
            "medium",
            ("model alone (synthetic:1920x1080, sync)", {"input_path": "synthetic:1920x1080"}),
        ),
    ):
        common = {"model_name": model, "input_path": str(clip), "batch_size": batch_size, "prep_level": level}
        runs: dict[str, dict[str, Any] | None] = {
            baseline[0]: None if baseline[1] is None else {**common, **baseline[1]}
        }
        for name, flags in decoders().items():
            for pipeline in ("sync", "async"):
                runs[f"{pipeline}, {name}"] = {**common, **flags, "pipeline": pipeline}
        plans[model] = runs
    return plans


def decode_rate(summary: dict[str, Any]) -> float | None:
    """Frames per second the decoder managed in a sync run: frames over its read and decode time."""
    stages = summary.get("stages", {})
    per_batch = sum(stages.get(c, {}).get("mean_ms", 0.0) for c in ("read_latency_ms", "decode_latency_ms"))
    steps = summary.get("steady_steps") or 0
    frames = summary.get("steady_frames") or 0
    return 1000.0 * (frames / steps) / per_batch if per_batch and steps else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=480, help="length of the generated 1080p clip")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="framescope-bench-") as tmp:
        out = Path(tmp) / "runs"
        clip = write_clip(Path(tmp) / "clip1080.mp4", width=1920, height=1080, frames=args.frames, fps=30)
        plans = configurations(clip, args.batch_size)
        for runs in plans.values():  # the model alone runs as many steps as the clip has
            for flat in runs.values():
                if flat is not None and str(flat["input_path"]).startswith("synthetic"):
                    flat["max_steps"] = args.frames // args.batch_size
        whole: dict[str, dict[str, list[float]]] = {m: {n: [] for n in r} for m, r in plans.items()}
        steady: dict[str, dict[str, list[float]]] = {m: {n: [] for n in r} for m, r in plans.items()}
        decoded: dict[str, dict[str, list[float]]] = {m: {} for m in plans}
        notes: dict[str, dict[str, list[str]]] = {m: {} for m in plans}
        for index in range(args.rounds):
            for model, runs in plans.items():
                order = list(runs) if index % 2 == 0 else list(reversed(runs))
                for name in order:
                    flat = runs[name]
                    if flat is None:
                        value = naive_loop(clip, model, args.batch_size)
                        whole[model][name].append(value)
                        steady[model][name].append(value)
                        continue
                    value, summary = framescope_fps(out, **flat)
                    whole[model][name].append(value)
                    steady[model][name].append(summary["steady_fps"])
                    if name.startswith("sync, "):
                        rate = decode_rate(summary)
                        if rate:
                            decoded[model].setdefault(name[len("sync, ") :], []).append(rate)
                    if name.startswith("async, "):
                        notes[model].setdefault(name, []).extend(summary["threads"]["notes"])
            print(f"round {index + 1}/{args.rounds} done", flush=True)
    results = report(
        plans=plans, whole=whole, steady=steady, decoded=decoded, notes=notes, batch_size=args.batch_size
    )
    from framescope.instrument import system

    (RESULTS / "pipeline.json").write_text(
        json.dumps(
            {
                "machine": system.collect(),
                "clip": f"1920x1080 H.264, {args.frames} frames",
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "whole_loop_fps": whole,
                "steady_fps": steady,
                "decode_fps": decoded,
                "thread_notes": notes,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS / 'pipeline.json'}")
    return 0


def _ratio(values: list[float], baseline: list[float]) -> float:
    """The median of per-round ratios (each round's pair ran side by side)."""
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True))


def report(
    *,
    plans: dict[str, dict[str, dict[str, Any] | None]],
    whole: dict[str, dict[str, list[float]]],
    steady: dict[str, dict[str, list[float]]],
    decoded: dict[str, dict[str, list[float]]],
    notes: dict[str, dict[str, list[str]]],
    batch_size: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for model, runs in plans.items():
        baseline = next(iter(runs))
        print(
            f"\n{model}, 1080p H.264, batch {batch_size} "
            "(median FPS; ratios are medians of per-round ratios):"
        )
        print(f"  {'configuration':44} {'steady':>8} {'whole':>8}  vs {baseline.split(' (')[0]}")
        for name in runs:
            base = whole if runs[baseline] is None else steady
            ratio = _ratio(base[model][name], base[model][baseline])
            print(
                f"  {name:44} {statistics.median(steady[model][name]):8.1f} "
                f"{statistics.median(whole[model][name]):8.1f}  {ratio:5.2f}x"
            )
            results.setdefault(model, {})[name] = {
                "steady_fps": statistics.median(steady[model][name]),
                "whole_loop_fps": statistics.median(whole[model][name]),
                "vs_baseline": ratio,
            }
        print("  async / sync (steady state), and each decoder's own rate (sync runs' read + decode):")
        for name in decoders():
            if f"async, {name}" not in runs:
                continue
            ratio = _ratio(steady[model][f"async, {name}"], steady[model][f"sync, {name}"])
            rate = statistics.median(decoded[model][name]) if decoded[model].get(name) else float("nan")
            print(f"    {name:42} async/sync {ratio:5.2f}x   decoder alone {rate:7.1f} FPS")
            results[model][f"async_over_sync, {name}"] = ratio
            results[model][f"decode_fps, {name}"] = rate
        for name, lines in notes[model].items():
            kept = [line.rsplit("; kept ", 1)[-1] for line in lines if "; kept " in line]
            if kept:
                print(f"  {name}: thread plan kept per round: {', '.join(kept)} torch threads")
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    sys.exit(main())
