"""The ladder the seed article climbed (9 -> 650 FPS), rung by rung, for ssd300_vgg16 on a 1080p clip.

Each rung adds one change to the one before and records its steady-state FPS and where the time went:

  1. CPU decode (OpenCV), batch 1, fp32, CPU post-processing (NMS), each stage in turn  (the naive pipeline)
  2. + post-processing on the GPU (batched NMS, one bulk copy of the results)
  3. + batch 8
  4. + fp16 (--use-amp)
  5. + preprocessing on the GPU
  6. + decoding on the GPU (torchcodec, frames never visit host memory)
  7. + the async pipeline (decode and preprocessing ahead of the model, CUDA events)

Needs a CUDA GPU (and torchcodec with FFmpeg's libraries for rung 6). Run on a GPU machine:

    python benchmarks/gpu_ladder.py              # results in benchmarks/results/gpu_ladder.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import framescope
from framescope import RunConfig
from framescope.sources import write_clip

RESULTS = Path(__file__).parent / "results"

RUNGS: list[tuple[str, dict[str, Any]]] = [
    ("CPU decode, batch 1, fp32, CPU NMS, sync", {"decoder": "opencv", "batch_size": 1}),
    ("+ NMS on the GPU", {"post_on_gpu": True}),
    ("+ batch 8", {"batch_size": 8}),
    ("+ fp16", {"use_amp": True}),
    ("+ preprocessing on the GPU", {"prep_on_gpu": True}),
    ("+ decoding on the GPU (torchcodec)", {"decoder": "torchcodec", "decode_on_gpu": True}),
    ("+ async pipeline", {"pipeline": "async"}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--model-name", default="ssd300_vgg16")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_ladder: needs a CUDA GPU; run it on a GPU machine.", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="framescope-ladder-") as tmp:
        clip = write_clip(Path(tmp) / "clip1080.mp4", width=1920, height=1080, frames=args.frames, fps=30)
        settings: dict[str, Any] = {
            "model_name": args.model_name,
            "input_path": str(clip),
            "infer_on_gpu": True,
            "max_steps": args.max_steps,
            "output_dir": str(Path(tmp) / "runs"),
            "progress": "none",
        }
        for name, change in RUNGS:
            before = dict(settings)
            settings.update(change)
            try:
                summary = framescope.run(RunConfig.from_flat(**settings)).summary
            except framescope.FramescopeError as exc:  # e.g. torchcodec missing: skip the rung, say so
                print(f"{name:42} skipped: {exc}")
                settings = before
                continue
            stages = {k: round(v["mean_ms"], 2) for k, v in summary["stages"].items()}
            rows.append(
                {"rung": name, "fps": summary["steady_fps"], "stages_ms": stages, "settings": dict(settings)}
            )
            print(f"{name:42} {summary['steady_fps']:8.1f} FPS   pace: {summary['pace_stage']}", flush=True)
    from framescope.instrument import system

    (RESULTS / "gpu_ladder.json").write_text(
        json.dumps({"machine": system.collect(), "rungs": rows}, indent=2)
    )
    print(f"wrote {RESULTS / 'gpu_ladder.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
