"""Issue 9's targets for ``framescope compare``, measured through the command line:

* the same configuration against itself, as fresh processes, compared with
  ``framescope compare A B --fail-on-regression 7``: "no measurable change" (and the gate passing) in at
  least 9 of ``--trials`` (10) repeated trials. Each trial runs ``--runs`` (3) runs a side, alternating
  (A B A B A B), and is compared twice: one run against one (the first of each side: step mode) and all
  runs a side (run mode: the run-to-run spread judges);
* the same with ``framescope compare --rerun BASELINE BASELINE --rounds 5`` (``--rerun-rounds``; 0 skips it):
  the baseline's configuration measured again against itself in interleaved rounds, judged by the rounds'
  paired ratios;
* a baseline against the same job with ``--torch-threads 1``: the slowdown reported, the gate exiting 1
  (compared runs a side, and with ``--rerun``).

The job: resnet18 on ``synthetic:224x224`` frames, batch 8, a fixed number of steps (the model sets the
pace, so the thread count matters). Results go to ``benchmarks/results/compare.json``.

    python benchmarks/compare.py              # 10 trials, about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from framescope.config import MALLOC_MODES
from tune import FRAMESCOPE, framescope_run  # this folder is on sys.path when run as a script

RESULTS = Path(__file__).parent / "results"


def compare(
    baseline: Path, candidate: Path, gate: float, *, rerun: tuple[int, Path] | None = None
) -> dict[str, Any]:
    """``framescope compare`` of two sides (or, with ``rerun=(rounds, output_dir)``, ``compare --rerun``)."""
    command = [
        *FRAMESCOPE,
        "compare",
        str(baseline),
        str(candidate),
        "--json",
        "--fail-on-regression",
        str(gate),
    ]
    if rerun is not None:
        command += ["--rerun", "--rounds", str(rerun[0]), "--output-dir", str(rerun[1])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    (throughput,) = (line for line in report["lines"] if line["metric"] == "throughput")
    ratio = throughput["ratio"] or {"low": float("nan"), "high": float("nan")}
    return {
        "method": report["method"],
        "exit_code": done.returncode,
        "verdict": throughput["verdict"],
        "change_pct": round(throughput["change_pct"], 2),
        "ci_pct": [
            round((ratio["low"] - 1) * 100, 2),
            round((ratio["high"] - 1) * 100, 2),
        ],
        "noise_floor_pct": round((throughput["noise_floor"] or 0) * 100, 2),
        "warnings": report["warnings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3, help="runs a side in each trial")
    parser.add_argument("--gate", type=float, default=7.0)
    parser.add_argument("--rerun-rounds", type=int, default=5, help="compare --rerun rounds (0: skip it)")
    parser.add_argument(
        "--malloc", choices=MALLOC_MODES, default="default",
        help="every run's allocator setting (README: Memory allocator)",
    )  # fmt: skip
    options = parser.parse_args()
    job = [
        "--model-name", "resnet18", "--input_path", "synthetic:224x224", "--batch-size", "8",
        "--max-steps", str(options.steps), "--malloc", options.malloc,
    ]  # fmt: skip
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="framescope-compare-") as tmp:
        work = Path(tmp)
        modes = ["one_run_a_side", "runs_a_side"] + (["rerun"] if options.rerun_rounds else [])
        same: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for trial in range(options.trials):
            sides = [work / f"same-{trial}" / "a", work / f"same-{trial}" / "b"]
            first = [framescope_run(job, side) for _ in range(options.runs) for side in sides][:2]
            for mode in modes:
                if mode == "rerun":
                    rounds = (options.rerun_rounds, work / f"same-{trial}" / "rerun")
                    result = compare(first[0], first[0], options.gate, rerun=rounds)
                else:
                    pair = first if mode == "one_run_a_side" else sides
                    result = compare(pair[0], pair[1], options.gate)
                same[mode].append(result)
                print(f"same configuration, trial {trial + 1}, {mode}: {result}", flush=True)
        sides = [work / "threads" / "default", work / "threads" / "one"]
        for _ in range(options.runs):
            framescope_run(job, sides[0])
            framescope_run([*job, "--torch-threads", "1"], sides[1])
        threads = compare(sides[0], sides[1], options.gate)
        print(f"--torch-threads 1 against the default, runs a side: {threads}", flush=True)
        threads_rerun = None
        if options.rerun_rounds:
            one, base = sorted(sides[1].iterdir())[0], sorted(sides[0].iterdir())[0]
            rounds = (options.rerun_rounds, work / "threads" / "rerun")
            threads_rerun = compare(base, one, options.gate, rerun=rounds)
            print(f"--torch-threads 1 against the default, --rerun: {threads_rerun}", flush=True)
    quiet = {mode: sum(r["verdict"] == "no measurable change" for r in rs) for mode, rs in same.items()}
    passed = {mode: sum(r["exit_code"] == 0 for r in rs) for mode, rs in same.items()}
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "job": shlex.join(job),
        "gate_pct": options.gate,
        "runs_a_side": options.runs,
        "same_configuration": {"trials": same, "no_measurable_change": quiet, "gate_passed": passed},
        "torch_threads_1": threads,
        "torch_threads_1_rerun": threads_rerun,
        "targets": {
            "same, runs a side: no measurable change in >= 9 of 10": quiet["runs_a_side"]
            >= 0.9 * options.trials,
            "same, one run a side: no measurable change in >= 9 of 10": quiet["one_run_a_side"]
            >= 0.9 * options.trials,
            "threads 1: slower and gate exit 1": threads["verdict"] == "slower" and threads["exit_code"] == 1,
            **(
                {
                    "same, --rerun: no measurable change in >= 9 of 10": quiet["rerun"]
                    >= 0.9 * options.trials,
                    "threads 1, --rerun: slower and gate exit 1": threads_rerun["verdict"] == "slower"
                    and threads_rerun["exit_code"] == 1,
                }
                if threads_rerun is not None
                else {}
            ),
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["targets"]), f"no measurable change: {quiet} of {options.trials}")


if __name__ == "__main__":
    main()
