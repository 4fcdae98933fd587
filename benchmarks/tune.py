"""Issue 8's targets for the diagnosis, measured the way a user would meet them: through the command line.

* mobilenet_v3_small on a 1080p H.264 clip, ``--pipeline sync --decoder opencv --batch-size 8``: ``--tune``
  names the input side as the bottleneck, measures its fixes, and the command it prints, run again on its
  own, is >= 1.5x the original's steady-state rate.
* resnet50 on the same clip, ``--pipeline async --torch-threads 1``: ``--tune`` finds the idle core, and its
  command is >= 1.6x the original.
* resnet50 on ``synthetic:224x224`` (model-bound): no input-side finding.

"Run again on its own" is measured side by side: the original and the printed command as fresh processes,
in alternating order for ``--rounds`` rounds, each over the whole clip; the speedup is the geometric mean of
the per-round ratios of steady-state FPS (from each run's summary.json) with its 95 % t interval.

    python benchmarks/tune.py                 # results in benchmarks/results/tune.json
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

from framescope.records import load_run
from framescope.sources import write_clip
from framescope.stats import paired_ratio

RESULTS = Path(__file__).parent / "results"
FRAMESCOPE = [sys.executable, "-m", "framescope"]
INPUT_SIDE = {"input_bound", "decode_full_size", "overlap_would_pay"}


def framescope_run(args: list[str], out: Path) -> Path:
    """Run ``framescope run ARGS`` in a fresh process; the run directory it wrote."""
    before = set(out.glob("*")) if out.exists() else set()
    command = [*FRAMESCOPE, "run", *args, "--output-dir", str(out), "--progress", "none"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr}")
    (run_dir,) = set(out.glob("*")) - before
    return run_dir


def flags_of(command: str) -> list[str]:
    """A printed ``framescope run ...`` command's flags, without where its output goes."""
    parts = shlex.split(command)[2:]
    kept: list[str] = []
    skip = False
    for part in parts:
        if skip:
            skip = False
            continue
        if part in ("--output-dir", "--progress"):
            skip = True
            continue
        kept.append(part)
    return kept


def tune_case(name: str, args: list[str], work: Path, rounds: int) -> dict[str, Any]:
    print(f"[{name}] framescope run {shlex.join(args)} --tune", flush=True)
    started = time.monotonic()
    run_dir = framescope_run([*args, "--tune"], work / name / "tuned")
    tune = json.loads((run_dir / "tune.json").read_text())
    findings = load_run(run_dir).summary["findings"]
    print(f"[{name}] findings: {[f['id'] for f in findings]}; tuned in {time.monotonic() - started:.0f} s")
    for trial in tune["trials"]:
        speedup = trial["speedup"]
        told = f"{speedup['value']:.2f}x [{speedup['low']:.2f}, {speedup['high']:.2f}]" if speedup else "-"
        print(f"[{name}]   {trial['finding']}: {trial['flags']} -> {told} {trial['verdict']}")
    print(f"[{name}] printed: {tune['command']}", flush=True)
    original, tuned = flags_of(tune["original_command"]), flags_of(tune["command"])
    base_fps: list[float] = []
    tuned_fps: list[float] = []
    for index in range(rounds):
        order = [("original", original), ("tuned", tuned)]
        for label, flags in order if index % 2 == 0 else order[::-1]:
            fps = load_run(framescope_run(flags, work / name / label)).summary["steady_fps"]
            (base_fps if label == "original" else tuned_fps).append(fps)
            print(f"[{name}]   round {index + 1} {label}: {fps:.1f} FPS", flush=True)
    ratio = paired_ratio(base_fps, tuned_fps)
    print(f"[{name}] again on its own: {ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]", flush=True)
    return {
        "rounds": rounds,
        "args": args,
        "findings": [{k: f[k] for k in ("id", "severity", "overrides")} for f in findings],
        "tune": {k: tune[k] for k in ("command", "overrides", "speedup", "notes")},
        "trials": [
            {k: t[k] for k in ("finding", "flags", "baseline_fps", "candidate_fps", "speedup", "verdict")}
            for t in tune["trials"]
        ],
        "again": {
            "original_fps": base_fps,
            "tuned_fps": tuned_fps,
            "speedup": ratio.value,
            "low": ratio.low,
            "high": ratio.high,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=480, help="length of the 1080p clip (default: 480)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of original against tuned (default: 5)")
    parser.add_argument("--keep", type=Path, help="keep the clip and every run directory here")
    parser.add_argument("--only", choices=("mobilenet", "resnet50", "model-bound"), help="one case only")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="framescope-tune-") as tmp:
        work = options.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clip = write_clip(work / "1080p.mp4", width=1920, height=1080, frames=options.frames, fps=30)
        hd = ["--input_path", str(clip), "--batch-size", "8"]
        path = RESULTS / "tune.json"
        results: dict[str, Any] = json.loads(path.read_text()) if options.only and path.exists() else {}
        results.update(
            machine=f"{platform.processor() or platform.machine()}, {platform.node()}",
            clip=f"1920x1080 H.264, {options.frames} frames",
        )
        cases = results.setdefault("cases", {})
        if options.only in (None, "mobilenet"):
            mobilenet = tune_case(
                "mobilenet-sync-opencv",
                ["--model-name", "mobilenet_v3_small", *hd, "--pipeline", "sync", "--decoder", "opencv"],
                work,
                options.rounds,
            )
            mobilenet["target"] = 1.5
            mobilenet["input_side_named"] = bool(INPUT_SIDE & {f["id"] for f in mobilenet["findings"]})
            mobilenet["met"] = mobilenet["input_side_named"] and mobilenet["again"]["speedup"] >= 1.5
            cases["mobilenet_sync_opencv"] = mobilenet
        if options.only in (None, "resnet50"):
            resnet = tune_case(
                "resnet50-async-1-thread",
                ["--model-name", "resnet50", *hd, "--pipeline", "async", "--torch-threads", "1"],
                work,
                options.rounds,
            )
            resnet["target"] = 1.6
            resnet["idle_core_found"] = "idle_cores" in {f["id"] for f in resnet["findings"]}
            resnet["met"] = resnet["idle_core_found"] and resnet["again"]["speedup"] >= 1.6
            cases["resnet50_async_one_thread"] = resnet
        if options.only in (None, "model-bound"):
            print(
                "[resnet50-synthetic] framescope run --model-name resnet50 --input_path synthetic:224x224:320"
            )
            bound = load_run(
                framescope_run(
                    [
                        "--model-name",
                        "resnet50",
                        "--input_path",
                        "synthetic:224x224:320",
                        "--batch-size",
                        "8",
                    ],
                    work / "model-bound",
                )
            ).summary
            ids = [f["id"] for f in bound["findings"]]
            print(f"[resnet50-synthetic] findings: {ids}")
            cases["resnet50_synthetic_model_bound"] = {
                "findings": ids,
                "pace_stage": bound["pace_stage"],
                "met": not INPUT_SIDE & set(ids),
            }
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    for name, case in results["cases"].items():
        print(f"{name}: {'met' if case['met'] else 'NOT MET'}")


if __name__ == "__main__":
    main()
