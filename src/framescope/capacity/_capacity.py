"""``framescope capacity``: how many cameras of one clip a machine serves with one model within a latency
budget.

The clip is replayed as N cameras (``--cameras N``, looped, each offset in time), batched dynamically across
them; N is searched by doubling, then bisection (:class:`CameraSearch`). Each trial is an ordinary run
directory, measured by the experiment runner under a :class:`TailRule` (until the percentile's verdict is
known with confidence). At each camera count every batching setting asked for is tried; the count passes
when one of them does, and the best of those is named.

The capacity directory::

    capacity.yaml                               base config, the rule, the settings, the search
    capacity.csv                                one row per trial
    capacity.json                               the answer, every trial, the decode cost, notes
    trials/cameras-N/SETTING/round-1/           ordinary run directories

Decoding is often the wall on a real deployment, so the cost of decoding one frame of the clip (with the
run's decoder and decode size) is measured before the search, and set against the pipeline's own cost per
frame at the answer: when decoding costs more, the answer says it is bounded by decoding.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framescope.capacity._search import CameraSearch
from framescope.capacity._trial import TailRule, judge
from framescope.config import RunConfig
from framescope.errors import ConfigError, SourceError
from framescope.experiment import Candidate, Experiment, Trial
from framescope.experiment._runner import RunFunction
from framescope.records import RunWriter
from framescope.sources import parse_source

CAPACITY_YAML = "capacity.yaml"
CAPACITY_CSV = "capacity.csv"
CAPACITY_JSON = "capacity.json"
TRIALS_DIR = "trials"
CSV_COLUMNS = (
    "phase",
    "cameras",
    "setting",
    "max_batch",
    "max_delay_ms",
    "verdict",
    "confident",
    "p50_ms",
    "p99_ms",
    "late_share",
    "drop_share",
    "frames",
    "dropped",
    "on_time_fps",
    "seconds",
    "run_dir",
    "why",
)
DECODE_PROBE_FRAMES = 60


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way of batching the cameras: ``max_batch`` None is one frame per camera (the camera count, as
    DeepStream's nvstreammux batches), ``max_delay_ms`` None the run's default (one frame interval)."""

    max_batch: int | None = None
    max_delay_ms: float | None = None

    @property
    def name(self) -> str:
        batch = "batch-cameras" if self.max_batch is None else f"batch-{self.max_batch}"
        delay = "" if self.max_delay_ms is None else f"_delay-{self.max_delay_ms:g}ms"
        return batch + delay

    def overrides(self, cameras: int) -> dict[str, Any]:
        values: dict[str, Any] = {"max_batch": self.max_batch or cameras}
        if self.max_delay_ms is not None:
            values["max_delay_ms"] = self.max_delay_ms
        return values

    def flags(self, cameras: int) -> str:
        text = f"--max-batch {self.max_batch or cameras}"
        return text + (f" --max-delay-ms {self.max_delay_ms:g}" if self.max_delay_ms is not None else "")


def _check_base(base: RunConfig, max_cameras: int, settings: list[Setting]) -> None:
    source = base.source
    if source.source_fps is None:
        raise ConfigError(
            "capacity replays the clip as cameras at a frame rate; pass --source-fps N (e.g. --source-fps "
            "30)."
        )
    if len(source.inputs) != 1:
        raise ConfigError(
            f"capacity replicates one clip as N cameras, but {len(source.inputs)} inputs were given; pass "
            "--input_path once."
        )
    spec = parse_source(source.inputs[0])
    if spec.live:
        raise ConfigError(
            f"capacity replays a video file as N cameras; {source.inputs[0]!r} is a live input. Record a "
            "clip of it and pass the file."
        )
    if "," in base.model.name:
        raise ConfigError(
            f"--model-name {base.model.name!r}: capacity measures one model; run it once per model."
        )
    if isinstance(max_cameras, bool) or not isinstance(max_cameras, int) or max_cameras < 1:
        raise ConfigError(
            f"--max-cameras {max_cameras!r} should be a positive integer; e.g. --max-cameras 64."
        )
    if not settings:
        raise ConfigError("capacity needs at least one batching setting.")
    for setting in settings:
        if setting.max_batch is not None and setting.max_batch < 1:
            raise ConfigError(f"--max-batch {setting.max_batch} should be at least 1; e.g. --max-batch 8.")
        if setting.max_delay_ms is not None and not setting.max_delay_ms > 0:
            raise ConfigError(
                f"--max-delay-ms {setting.max_delay_ms:g} should be positive; e.g. --max-delay-ms 33."
            )


def _check_rule(rule: TailRule) -> None:
    checks = (
        (
            rule.budget_ms > 0,
            f"--p99-budget-ms {rule.budget_ms:g} should be positive; e.g. --p99-budget-ms 100.",
        ),
        (
            0 < rule.percentile < 100,
            f"--percentile {rule.percentile:g} should lie between 0 and 100; e.g. --percentile 99.",
        ),
        (
            0 <= rule.max_drop < 1,
            f"--max-drop-pct {100 * rule.max_drop:g} should lie in [0, 100); e.g. --max-drop-pct 1.",
        ),
        (
            0.5 <= rule.confidence < 1,
            f"--confidence {rule.confidence:g} should lie in [0.5, 1); e.g. --confidence 0.95.",
        ),
        (rule.min_seconds >= 0, f"--min-seconds {rule.min_seconds:g} should not be negative."),
        (
            rule.max_seconds > 0 and rule.max_seconds >= rule.min_seconds,
            f"--max-seconds {rule.max_seconds:g} should be positive and at least --min-seconds.",
        ),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def decode_cost(base: RunConfig, frames: int = DECODE_PROBE_FRAMES) -> dict[str, Any]:
    """Decode up to ``frames`` frames of the clip with the run's decoder and decode size, alone in this
    thread, and time each: the median is what one camera's reader pays per frame."""
    from framescope._placement import decode_size
    from framescope.config import parse_decode_size
    from framescope.sources import make_source

    config = dataclasses.replace(base.source, source_fps=None, loop=False, cameras=1)
    source = make_source(config, threads=config.decode_threads or 1)
    times: list[float] = []
    try:
        source.open()
        if parse_decode_size(config.decode_size) is not None:  # as the run resizes while decoding
            from framescope.models import build_model, input_spec

            model = build_model(base.model.name, "none", seed=base.seed)  # for its input size only
            source.set_output_size(decode_size(base, input_spec(base.model.name, model), source.info))
            del model
        for _ in range(frames + 2):
            start = time.perf_counter()
            frame = source.read()
            if frame is None:
                break
            times.append((time.perf_counter() - start) * 1000.0)
        info = source.info
    finally:
        source.close()
    steady = times[2:] if len(times) > 4 else times  # the first reads also open the decoder
    if not steady:
        raise SourceError(f"{base.source.inputs[0]!r} gave no frame to decode; check the clip.")
    ms = statistics.median(steady)
    fps = float(base.source.source_fps or 0)
    return {
        "decoder": base.source.decoder,
        "decode_size": base.source.decode_size,
        "width": info.width,
        "height": info.height,
        "frames_timed": len(steady),
        "ms_per_frame": ms,
        "core_share_per_camera": ms * fps / 1000.0,
        "method": f"median of {len(steady)} sequential reads in one thread, before the search",
    }


def pipeline_cost(rows: Any) -> float | None:
    """The pipeline's own time per frame in a trial's steady steps: each step's time less its wait for
    frames (the read stage), over the frames it processed."""
    steady = rows[(rows["warmup"] == 0) & (rows["profiled"] == 0)] if "profiled" in rows else rows
    frames = float(steady["frames"].sum())
    if not frames:
        return None
    busy = steady["total_step_latency_ms"] - steady["read_latency_ms"].fillna(0.0)
    return float(busy.clip(lower=0).sum()) / frames


class Capacity:
    """``Capacity(base, rule).run()`` searches the camera count and returns capacity.json's content.
    ``request_stop()`` (a first Ctrl-C) ends it after the trial in progress."""

    def __init__(
        self,
        base: RunConfig,
        rule: TailRule,
        *,
        max_cameras: int = 64,
        settings: list[Setting] | None = None,
        on_trial: Callable[[dict[str, Any]], None] | None = None,
        run: RunFunction | None = None,
        probe_decode: bool = True,
        confirm_rounds: int = 2,
        confirm_seconds: float = 30.0,
    ) -> None:
        self.settings = settings if settings is not None else [Setting()]
        _check_base(base, max_cameras, self.settings)
        _check_rule(rule)
        self.rule, self.max_cameras = rule, max_cameras
        if isinstance(confirm_rounds, bool) or not isinstance(confirm_rounds, int) or confirm_rounds < 0:
            raise ConfigError(
                f"--confirm-rounds {confirm_rounds!r} should be 0 or more; e.g. --confirm-rounds 2."
            )
        if not confirm_seconds > 0:
            raise ConfigError(f"--confirm-seconds {confirm_seconds:g} should be positive; e.g. 30.")
        self.confirm_rounds, self.confirm_seconds = confirm_rounds, confirm_seconds
        self.confirmed: set[int] = set()
        self._confirming: Experiment | None = None
        self.base = base.replace(
            batching="dynamic",
            loop=True,
            deadline_ms=rule.budget_ms,
            torch_profile=False,
            max_steps=None,
            cameras=1,
        )
        for setting in self.settings:  # every trial's settings checked before any runs
            self.base.replace(**setting.overrides(2), cameras=2)
        self.on_trial = on_trial or (lambda trial: None)
        self.run_one, self.probe_decode = run, probe_decode
        self.search = CameraSearch(ceiling=max_cameras)
        self.trials: list[dict[str, Any]] = []
        self.decode: dict[str, Any] | None = None
        self.stop_requested = False
        self.interrupted = False
        self.capacity_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._results: dict[tuple[int, str], Trial] = {}

    # --- running --------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_requested = True

    def create(self) -> Path:
        """The capacity directory: ``--output-dir``/``--run-name``, or ``capacity-MODEL-YYYYmmdd-HHMMSS``.
        The decoding is measured first, so a clip that cannot be decoded is refused before any file."""
        if self.probe_decode and self.decode is None:
            self.decode = decode_cost(self.base)
        name = self.base.run_name or f"capacity-{self.base.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._writer = RunWriter.create(
            Path(self.base.output_dir), name, CAPACITY_CSV, unique=self.base.run_name is None
        )
        self.capacity_dir = self._writer.run_dir
        self._writer.write_text(CAPACITY_YAML, self._plan_yaml())
        self.write()
        return self.capacity_dir

    def run(self) -> dict[str, Any]:
        if self.capacity_dir is None:
            self.create()
        try:
            while not self.interrupted:
                cameras = self.search.next_count()
                if cameras is not None:
                    self._try(cameras)
                    continue
                answer = self.search.best
                if not answer or answer in self.confirmed or not self.confirm_rounds:
                    break
                self._confirm(answer)  # a failure there reopens the search below the answer
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            report = self.write()
        return report

    def _experiment(
        self, cameras: int, settings: list[Setting], *, phase: str, rounds: int, rule: TailRule
    ) -> Experiment:
        """The runs of ``settings`` at ``cameras``, under ``trials/cameras-N[-confirm]/SETTING/round-R``."""
        assert self.capacity_dir is not None
        folder = f"cameras-{cameras}" + ("-confirm" if phase == "confirm" else "")
        return Experiment(
            self.base.replace(cameras=cameras),
            [Candidate(s.name, s.overrides(cameras)) for s in settings],
            parent=self.capacity_dir / TRIALS_DIR / folder,
            rounds=rounds,
            stop=rule,
            on_trial=lambda trial: self._after(cameras, trial, phase),
            run=self.run_one,
        )

    def _try(self, cameras: int) -> None:
        experiment = self._experiment(cameras, self.settings, phase="search", rounds=1, rule=self.rule)
        experiment.run()
        here = [t for t in self.trials if t["cameras"] == cameras and t["phase"] == "search"]
        passed = any(t["verdict"] == "pass" for t in here)
        if passed or len(here) == len(self.settings):  # a pass is an answer; a fail only once all were tried
            self.search.record(cameras, passed)
        self.interrupted = experiment.interrupted

    def _confirm(self, cameras: int) -> None:
        """Run the answer again, ``confirm_rounds`` fresh runs of its best setting, each at least
        ``confirm_seconds``: a count that passed one short trial must keep passing. Any failure marks the
        count failed, and the search goes on below it."""
        best = self.best_at(cameras)
        setting = next((s for s in self.settings if best and s.name == best["setting"]), self.settings[0])
        rule = dataclasses.replace(
            self.rule,
            min_seconds=max(self.rule.min_seconds, self.confirm_seconds),
            max_seconds=max(self.rule.max_seconds, 1.5 * self.confirm_seconds),
        )
        experiment = self._experiment(
            cameras, [setting], phase="confirm", rounds=self.confirm_rounds, rule=rule
        )
        self._confirming = experiment
        experiment.run()
        here = [t for t in self.trials if t["cameras"] == cameras and t["phase"] == "confirm"]
        if any(t["verdict"] == "fail" for t in here):
            self.search.record(cameras, False)
        elif len(here) == self.confirm_rounds:
            self.confirmed.add(cameras)
        self.interrupted = experiment.interrupted

    def _after(self, cameras: int, trial: Trial, phase: str = "search") -> None:
        setting = next(s for s in self.settings if s.name == trial.candidate)
        record = {"phase": phase, **self._record(cameras, setting, trial)}
        self.trials.append(record)
        if phase == "confirm" and record["verdict"] == "fail" and self._confirming is not None:
            self._confirming.exclude([trial.candidate])  # one failure settles it: no more rounds
        self._results[(cameras, setting.name)] = trial
        self.write()
        self.on_trial(record)
        if self.stop_requested:
            raise KeyboardInterrupt  # the experiment keeps this trial and ends the search

    def _record(self, cameras: int, setting: Setting, trial: Trial) -> dict[str, Any]:
        head: dict[str, Any] = {
            "cameras": cameras,
            "setting": setting.name,
            "max_batch": setting.max_batch or cameras,
            "max_delay_ms": setting.max_delay_ms,
            "run_dir": str(trial.run_dir) if trial.run_dir is not None else None,
        }
        if trial.result is None:
            return {**head, "verdict": "fail", "confident": False, "why": trial.error or trial.status}
        summary = trial.result.summary
        delay = (summary.get("batching") or {}).get("max_delay_ms")
        if delay is not None:
            head["max_delay_ms"] = delay
        judged = judge(summary, self.rule)
        faults = any(f.get("id") == "allocator_page_faults" for f in summary.get("findings") or [])
        return {**head, **judged, "steps": trial.steps, "allocator_page_faults": faults}

    # --- the answer -----------------------------------------------------------------------------------

    def best_at(self, cameras: int) -> dict[str, Any] | None:
        """The passing search trial at ``cameras`` with the lowest p99 (the settings named with the
        answer)."""
        passed = [
            t
            for t in self.trials
            if t["cameras"] == cameras and t["verdict"] == "pass" and t["phase"] == "search"
        ]
        return min(
            passed, key=lambda t: t["p99_ms"] if t["p99_ms"] is not None else float("inf"), default=None
        )

    def _limit(self, answer: int) -> dict[str, Any] | None:
        """What bounds the answer: decoding, when a frame's decoding costs more than the pipeline's work on
        it (both measured), else the model's pipeline."""
        if self.decode is None:
            return None
        counts = [answer] if answer else []
        if self.search.first_failed is not None:
            counts.append(self.search.first_failed)
        for cameras in counts:
            trial = next(
                (
                    self._results[(cameras, s.name)]
                    for s in self.settings
                    if (cameras, s.name) in self._results and self._results[(cameras, s.name)].result
                ),
                None,
            )
            if trial is None or trial.result is None:
                continue
            work = pipeline_cost(trial.result.rows)
            if work is None:
                continue
            decode = self.decode["ms_per_frame"]
            fps = float(self.base.source.source_fps or 0)
            cores = len(trial.result.summary.get("threads", {}).get("cores") or []) or None
            return {
                "bound_by": "decoding" if decode >= work else "model",
                "decode_ms_per_frame": decode,
                "pipeline_ms_per_frame": work,
                "measured_at_cameras": cameras,
                "cores": cores,
                "decode_cores_at_answer": answer * fps * decode / 1000.0,
                "pipeline_cores_at_answer": answer * fps * work / 1000.0,
            }
        return None

    def report(self) -> dict[str, Any]:
        answer = self.search.best
        best = self.best_at(answer) if answer else None
        limit = self._limit(answer)
        report: dict[str, Any] = {
            "capacity_dir": str(self.capacity_dir),
            "model": self.base.model.name,
            "input": self.base.source.input_path,
            "source_fps": self.base.source.source_fps,
            "cameras": answer,
            "budget_ms": self.rule.budget_ms,
            "percentile": self.rule.percentile,
            "max_drop_share": self.rule.max_drop,
            "confidence": self.rule.confidence,
            "max_cameras": self.max_cameras,
            "first_failed": self.search.first_failed,
            "at_ceiling": self.search.at_ceiling,
            "done": self.search.next_count() is None
            and (not answer or answer in self.confirmed or not self.confirm_rounds),
            "confirmed": answer in self.confirmed,
            "confirm_rounds": self.confirm_rounds,
            "confirm_seconds": self.confirm_seconds,
            "best_setting": (
                {
                    "setting": best["setting"],
                    "max_batch": best["max_batch"],
                    "max_delay_ms": best["max_delay_ms"],
                }
                if best
                else None
            ),
            "rule": dataclasses.asdict(self.rule),
            "settings": [s.name for s in self.settings],
            "trials": self.trials,
            "decode": self.decode,
            "limit": limit,
            "interrupted": self.interrupted,
            "notes": self._notes(answer, limit),
        }
        return report

    def _notes(self, answer: int, limit: dict[str, Any] | None) -> list[str]:
        notes = []
        fps = self.base.source.source_fps
        if self.search.at_ceiling:
            notes.append(
                f"{answer} cameras (the --max-cameras ceiling) passed: the machine may serve more; raise "
                "--max-cameras to search further"
            )
        if not answer and self.search.first_failed is not None:
            why = next((t["why"] for t in self.trials if t["cameras"] == 1 and t.get("why")), None)
            notes.append(
                f"even 1 camera at {fps:g} FPS did not meet the budget" + (f" ({why})" if why else "")
            )
        for trial in self.trials:
            if trial["phase"] == "confirm" and trial["verdict"] == "fail":
                notes.append(
                    f"{trial['cameras']} cameras passed the search's trial but failed a confirmation run "
                    f"({trial.get('why') or 'see its run directory'}): the same setting measures differently "
                    "from run to run on this machine, so the answer is the largest count that passed every "
                    "run"
                )
        faulted = sorted({t["cameras"] for t in self.trials if t.get("allocator_page_faults")})
        if faulted:
            notes.append(
                f"trials at {', '.join(map(str, faulted))} camera(s) paid glibc's page faults (finding "
                "allocator_page_faults): whether a process does varies from process to process, and runs of "
                "one job then land 20-40% apart, so this answer may not hold in another process; --malloc "
                "retain makes it hold (README: Memory allocator)"
            )
        unsure = [t for t in self.trials if not t["confident"]]
        if unsure:
            counts = ", ".join(sorted({str(t["cameras"]) for t in unsure}, key=int))
            notes.append(
                f"trials at {counts} camera(s) ended (time cap {self.rule.max_seconds:g} s) before their "
                f"verdict was known with {100 * self.rule.confidence:g} % confidence; judged on their point "
                "estimates"
            )
        if limit is not None and limit["bound_by"] == "decoding":
            notes.append(
                f"bounded by decoding: a frame costs {limit['decode_ms_per_frame']:.1f} ms to decode "
                f"({self.base.source.decoder}) against {limit['pipeline_ms_per_frame']:.1f} ms in the rest "
                f"of the pipeline; at {answer} camera(s) decoding takes "
                f"{limit['decode_cores_at_answer']:.2f} cores. Decode smaller (--decode-size auto), on the "
                "GPU (--decode-on-gpu), or with another decoder to serve more"
            )
        if self.interrupted:
            notes.append("interrupted: the answer rests on the trials finished so far")
        return notes

    # --- the files --------------------------------------------------------------------------------------

    def write(self) -> dict[str, Any]:
        """capacity.csv and capacity.json as they stand, each replaced atomically."""
        assert self._writer is not None
        report = self.report()
        self._writer.write_text(CAPACITY_CSV, csv_text(self.trials))
        self._writer.write_json(CAPACITY_JSON, report)
        return report

    def _plan_yaml(self) -> str:
        import yaml

        plan = {
            "base": self.base.to_dict(),
            "rule": dataclasses.asdict(self.rule),
            "max_cameras": self.max_cameras,
            "settings": [dataclasses.asdict(s) for s in self.settings],
            "search": "doubling from 1 camera, then bisection",
        }
        return yaml.safe_dump(plan, sort_keys=False)


def csv_text(trials: list[dict[str, Any]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for trial in trials:
        writer.writerow({k: "" if trial.get(k) is None else trial.get(k) for k in CSV_COLUMNS})
    return out.getvalue()


def is_capacity_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a capacity directory (it holds capacity.json)."""
    return Path(path).is_dir() and (Path(path) / CAPACITY_JSON).is_file()


def load_capacity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """capacity.json of ``path``, with ``capacity_dir`` set to where it is now; a missing or damaged file is
    one line naming it."""
    from framescope.records._result import load_listing

    return load_listing(path, CAPACITY_JSON, "capacity", "trials")
