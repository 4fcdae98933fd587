"""Typed, validated configuration: one kw-only dataclass per component, merged into :class:`RunConfig`.

The CLI, YAML files and the Python API all build these same objects; defaults live here and nowhere else.
This module must stay free of torch and of I/O beyond reading a config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from framescope.errors import ConfigError

DECODERS = ("opencv", "pyav", "torchcodec")
PREP_LEVELS = ("simple", "medium", "complex")
MODES = ("inference", "retrain")
PROGRESS_MODES = ("auto", "bar", "log", "none")
PIPELINES = ("sync", "async")


def _require_text(value: object, message: str) -> None:
    """A required string setting: ``message`` (naming the flag and the fix) when it is missing or blank."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(message)


def _positive_int(value: object, name: str, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} = {value!r} should be a positive integer; pass e.g. {flag} 8.")


def _non_negative_int(value: object, name: str, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} = {value!r} should be an integer >= 0; pass e.g. {flag} 2.")


def _finite(value: object) -> int | float | None:
    """``value`` when it is an int or a finite float; None for anything else (a bool, NaN, infinity, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _positive_number(value: object, name: str, flag: str, *, unit: str | None, example: str) -> None:
    """A finite number > 0 in ``unit`` (``seconds``, ...; None for a plain number such as a learning rate)."""
    number = _finite(value)
    if number is None or number <= 0:
        what = f"a positive number of {unit}" if unit else "a positive number"
        raise ConfigError(f"{name} = {value!r} should be {what} (finite, > 0); pass e.g. {flag} {example}.")


def _choice(value: object, allowed: tuple[str, ...], name: str, flag: str) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{name} = {value!r} is not one of {', '.join(allowed)}; pass e.g. {flag} {allowed[0]}."
        )


def parse_decode_size(text: str | None) -> tuple[int, int] | str | None:
    """``--decode-size``: None, ``auto``, or ``WIDTHxHEIGHT`` as (width, height)."""
    if text is None or text == "auto":
        return text
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        if width < 2 or height < 2:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--decode-size {text!r} should be WIDTHxHEIGHT (e.g. 640x360) or auto.") from None
    return width, height


def parse_core_list(spec: str) -> tuple[int, ...] | None:
    """Parse a ``--core-bind`` value: ``all`` (None), ``0-3``, ``0,2,5`` or a mix such as ``0-1,4``.

    Only the syntax is checked here; whether the cores exist is checked when binding.
    """
    if not isinstance(spec, str):
        raise ConfigError(
            f"core_bind = {spec!r} should be a string: 'all', a range like '0-3' or a list like '0,2,5' "
            "(quote it in YAML)."
        )
    text = spec.strip().lower()
    if not text:
        raise ConfigError(
            f"--core-bind {spec!r} is empty; pass a core list such as 0-3 or 0,2,5, or 'all' for every core."
        )
    if text == "all":
        return None
    cores: set[int] = set()
    for part in text.split(","):
        piece = part.strip()
        try:
            if "-" in piece:
                lo_text, hi_text = piece.split("-", 1)
                lo, hi = int(lo_text), int(hi_text)
                if lo > hi or lo < 0:
                    raise ValueError
                cores.update(range(lo, hi + 1))
            else:
                core = int(piece)
                if core < 0:
                    raise ValueError
                cores.add(core)
        except ValueError:
            raise ConfigError(
                f"--core-bind {spec!r} is not a core list; use 'all', a range like 0-3, or a list like 0,2,5."
            ) from None
    return tuple(sorted(cores))


@dataclass(kw_only=True)
class SourceConfig:
    """Where frames come from and how they are decoded."""

    input_path: str
    """A video file, a directory of images, a camera index (``0``), an ``rtsp://`` / ``http(s)://`` URL,
    ``synthetic:WIDTHxHEIGHT[:FRAMES]`` (generated frames, no file) or ``sample:`` (a built-in clip)."""
    decoder: str = "opencv"
    """Video decoder: ``opencv`` (the seed's cv2.VideoCapture) or ``pyav`` (FFmpeg through PyAV)."""
    decode_threads: int = 0
    """FFmpeg decoding threads; 0 picks a budget that fits the bound cores."""
    decode_on_gpu: bool = False
    """Decode with NVDEC: torchcodec keeps frames on the GPU; PyAV's CUDA hwaccel copies them to the host."""
    decode_size: str | None = None
    """Resize while decoding, where the decoder can: ``WIDTHxHEIGHT``, or ``auto`` for the size the model's
    preprocessing would shrink the frame to; None decodes at the native size."""
    open_timeout_s: float = 10.0
    """Seconds to wait for a stream or camera to open before giving up."""
    read_timeout_s: float = 10.0
    """Seconds to wait for the next frame of a stream before counting it as stalled."""
    source_fps: float | None = None
    """Replay a file (or images, or synthetic frames) as a live camera at this many frames per second."""
    live_buffer: int = 0
    """Live inputs: frames kept waiting for the pipeline (older ones are dropped); 0 means two batches."""
    reconnect_for_s: float = 60.0
    """Live streams and cameras: keep reconnecting for this long without a frame before giving up."""

    def __post_init__(self) -> None:
        _require_text(
            self.input_path,
            "input_path is empty; pass --input_path VIDEO (a file, camera index, URL or directory).",
        )
        _choice(self.decoder, DECODERS, "decoder", "--decoder")
        _non_negative_int(self.decode_threads, "decode_threads", "--decode-threads")
        parse_decode_size(self.decode_size)
        if self.source_fps is not None:
            _positive_number(
                self.source_fps, "source_fps", "--source-fps", unit="frames per second", example="30"
            )
        _non_negative_int(self.live_buffer, "live_buffer", "--live-buffer")
        _positive_number(
            self.reconnect_for_s, "reconnect_for_s", "--reconnect-for", unit="seconds", example="60"
        )
        if self.decode_on_gpu and self.decoder == "opencv":
            raise ConfigError(
                "--decode-on-gpu needs --decoder torchcodec (or pyav); OpenCV decodes on the CPU."
            )
        _positive_number(
            self.open_timeout_s, "open_timeout_s", "--open-timeout", unit="seconds", example="10"
        )
        _positive_number(
            self.read_timeout_s, "read_timeout_s", "--read-timeout", unit="seconds", example="10"
        )


@dataclass(kw_only=True)
class PreprocessConfig:
    """How a uint8 batch becomes the model's input."""

    level: str = "medium"
    """``simple``, ``medium`` or ``complex`` (see the README for exactly what each does)."""
    on_gpu: bool = False
    """Move the raw uint8 batch to the GPU and preprocess there (the seed's ``--prep-on-gpu``)."""

    def __post_init__(self) -> None:
        _choice(self.level, PREP_LEVELS, "prep_level", "--prep-level")


@dataclass(kw_only=True)
class PostprocessConfig:
    """How the model's raw output becomes results (top-5 classes, detections after NMS, class maps)."""

    on_gpu: bool = False
    """Post-process on the GPU (batched NMS there, then one bulk copy of the final results) instead of
    copying the raw outputs to the CPU and post-processing there."""


@dataclass(kw_only=True)
class ModelConfig:
    """Which model runs, where, and how."""

    name: str
    """A torchvision model name, e.g. ``resnet50``, ``vit_b_16``, ``ssd300_vgg16``."""
    mode: str = "inference"
    """``inference`` or ``retrain`` (frozen backbone, new head, virtual labels, optimizer step)."""
    weights: str = "none"
    """``none`` (random weights, works offline), ``DEFAULT`` (torchvision's download) or a state-dict path."""
    on_gpu: bool = False
    """Run the model on CUDA (the seed's ``--infer-on-gpu``)."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    compile_backend: str = "inductor"
    """The ``torch.compile`` backend."""
    amp: bool = False
    """Automatic mixed precision: float16 on CUDA, bfloat16 on CPU."""
    num_classes: int = 10
    """Retrain mode: classes of the replaced head (labels are virtual)."""
    learning_rate: float = 0.01
    """Retrain mode: SGD learning rate for the head."""
    split_point: str | None = None
    """``MODEL:LAYER`` or ``LAYER``: the model up to LAYER runs on the CPU, the rest on the model's device."""

    def __post_init__(self) -> None:
        _require_text(self.name, "model name is empty; pass --model-name, e.g. --model-name resnet50.")
        _choice(self.mode, MODES, "mode", "--mode")
        if self.split_point is not None:
            model, _, layer = self.split_point.strip().rpartition(":")
            if not layer:
                raise ConfigError(
                    f"--split-point {self.split_point!r} names no layer; write MODEL:LAYER, e.g. "
                    "resnet50:layer3."
                )
            if model and model != self.name:
                raise ConfigError(
                    f"--split-point {self.split_point!r} is for {model}, but the model is {self.name}; "
                    f"write {self.name}:{layer}."
                )
        _positive_int(self.num_classes, "num_classes", "--num-classes")
        _positive_number(self.learning_rate, "learning_rate", "--lr", unit=None, example="0.01")


@dataclass(kw_only=True)
class ProfileConfig:
    """The torch.profiler window (wait, warm-up and active steps), written as a Chrome/Perfetto trace."""

    enabled: bool = False
    """Record a torch.profiler window (``--torch-profile`` or ``ENABLE_PROFILING=1``)."""
    wait: int = 1
    """Steps to skip before the profiler starts warming up."""
    warmup: int = 1
    """Steps the profiler traces but discards."""
    active: int = 3
    """Steps recorded into the trace."""

    def __post_init__(self) -> None:
        _non_negative_int(self.wait, "profile_wait", "--profile-wait")
        _non_negative_int(self.warmup, "profile_warmup", "--profile-warmup")
        _positive_int(self.active, "profile_active", "--profile-active")


SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "source": SourceConfig,
    "preprocess": PreprocessConfig,
    "postprocess": PostprocessConfig,
    "profile": ProfileConfig,
}
"""The sections of a run config, by key."""


@dataclass(kw_only=True)
class RunConfig:
    """Everything one ``framescope run`` needs. Build it directly, with :meth:`from_flat`, or from YAML."""

    model: ModelConfig
    source: SourceConfig
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    batch_size: int = 1
    """Frames per batch; the last batch of a finite input may be shorter."""
    pipeline: str = "sync"
    """``sync``: each stage in turn (the seed's loop). ``async``: reading, decoding and preprocessing run
    ahead of the model in a producer thread."""
    prefetch: int = 2
    """Async: batches the producer may have ready ahead of the model (the queue's bound)."""
    deadline_ms: float | None = None
    """Live inputs: a frame is on time when its result is ready within this many ms of when it was due;
    None means the time to fill a batch plus one frame interval, (batch_size + 1) / fps."""
    max_steps: int | None = None
    """Stop after this many batches (warm-up included); ``None`` runs to the end of the input."""
    warmup_steps: int = 2
    """Leading batches recorded in the CSV but kept out of the steady-state summary."""
    core_bind: str = "all"
    """CPU cores to bind the process to (``0-3``, ``0,2,5``, ``all``); torch threads follow."""
    torch_threads: int | None = None
    """Torch intra-op threads; ``None`` uses one per bound core."""
    output_dir: str = "runs"
    """Parent directory of run directories."""
    run_name: str | None = None
    """Name of this run's directory under ``output_dir``; default ``{model}_{date-time}_P{pid}``."""
    seed: int = 0
    """Seed for random weights, virtual labels and synthetic frames, so runs are repeatable."""
    progress: str = "auto"
    """``auto`` (a bar on a terminal, log lines otherwise), ``bar``, ``log`` or ``none``."""

    # Flat names (the seed's flags with underscores) -> path in the nested config.
    FLAT_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "model_name": ("model", "name"),
        "mode": ("model", "mode"),
        "weights": ("model", "weights"),
        "infer_on_gpu": ("model", "on_gpu"),
        "enable_compile": ("model", "compile"),
        "compile_backend": ("model", "compile_backend"),
        "use_amp": ("model", "amp"),
        "num_classes": ("model", "num_classes"),
        "lr": ("model", "learning_rate"),
        "split_point": ("model", "split_point"),
        "input_path": ("source", "input_path"),
        "decoder": ("source", "decoder"),
        "decode_threads": ("source", "decode_threads"),
        "decode_on_gpu": ("source", "decode_on_gpu"),
        "decode_size": ("source", "decode_size"),
        "open_timeout": ("source", "open_timeout_s"),
        "read_timeout": ("source", "read_timeout_s"),
        "source_fps": ("source", "source_fps"),
        "live_buffer": ("source", "live_buffer"),
        "reconnect_for": ("source", "reconnect_for_s"),
        "prep_level": ("preprocess", "level"),
        "prep_on_gpu": ("preprocess", "on_gpu"),
        "post_on_gpu": ("postprocess", "on_gpu"),
        "torch_profile": ("profile", "enabled"),
        "profile_wait": ("profile", "wait"),
        "profile_warmup": ("profile", "warmup"),
        "profile_active": ("profile", "active"),
        "batch_size": ("batch_size",),
        "pipeline": ("pipeline",),
        "prefetch": ("prefetch",),
        "deadline_ms": ("deadline_ms",),
        "max_steps": ("max_steps",),
        "warmup_steps": ("warmup_steps",),
        "core_bind": ("core_bind",),
        "torch_threads": ("torch_threads",),
        "output_dir": ("output_dir",),
        "run_name": ("run_name",),
        "seed": ("seed",),
        "progress": ("progress",),
    }

    def __post_init__(self) -> None:
        _positive_int(self.batch_size, "batch_size", "--batch-size")
        _choice(self.pipeline, PIPELINES, "pipeline", "--pipeline")
        _positive_int(self.prefetch, "prefetch", "--prefetch")
        if self.deadline_ms is not None:
            _positive_number(
                self.deadline_ms, "deadline_ms", "--deadline-ms", unit="milliseconds", example="100"
            )
        if self.max_steps is not None:
            _positive_int(self.max_steps, "max_steps", "--max-steps")
        _non_negative_int(self.warmup_steps, "warmup_steps", "--warmup-steps")
        parse_core_list(self.core_bind)
        if self.torch_threads is not None:
            _positive_int(self.torch_threads, "torch_threads", "--torch-threads")
        _require_text(self.output_dir, "output_dir is empty; pass --output-dir DIR.")
        if self.run_name is not None and (not self.run_name or os.sep in self.run_name):
            raise ConfigError(
                f"run_name = {self.run_name!r} should be a plain directory name without '{os.sep}'."
            )
        _choice(self.progress, PROGRESS_MODES, "progress", "--progress")

    @property
    def cores(self) -> tuple[int, ...] | None:
        """The cores to bind to, or None for all."""
        return parse_core_list(self.core_bind)

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def from_flat(cls, **values: Any) -> RunConfig:
        """Build from the seed's flat names, e.g. ``RunConfig.from_flat(model_name="resnet50",
        input_path="video.mp4", batch_size=16, prep_level="medium", infer_on_gpu=True)``."""
        nested: dict[str, Any] = {}
        for key, value in values.items():
            if key not in cls.FLAT_FIELDS:
                raise ConfigError(_unknown(f"unknown setting {key!r}", key, cls.FLAT_FIELDS, "settings"))
            path = cls.FLAT_FIELDS[key]
            target = nested
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return cls.from_dict(nested)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a nested mapping (the shape of ``config.yaml``); unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(
                "a run config must be a mapping of settings (see config.yaml in any run directory)."
            )
        top_fields = [f.name for f in dataclasses.fields(cls)]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in top_fields:
                raise ConfigError(_unknown(f"unknown config key {key!r}", key, top_fields))
            if key in SECTIONS:
                kwargs[key] = _build_section(SECTIONS[key], key, value)
            else:
                kwargs[key] = value
        for required in ("model", "source"):
            if required not in kwargs:
                flag = "--model-name" if required == "model" else "--input_path"
                raise ConfigError(f"the run has no {required}; pass {flag}.")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a missing required field inside a section
            raise ConfigError(f"incomplete config: {exc}.") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a YAML file written by :meth:`to_yaml` (or by hand, in the same shape)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}; check the path.") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{file} is not valid YAML ({str(exc).splitlines()[0]}); fix the file."
            ) from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict, the shape of ``config.yaml``."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with some flat settings changed (same names as :meth:`from_flat`)."""
        data = self.to_dict()
        for key, value in flat.items():
            if key not in self.FLAT_FIELDS:
                raise ConfigError(_unknown(f"unknown setting {key!r}", key, self.FLAT_FIELDS, "settings"))
            target = data
            path = self.FLAT_FIELDS[key]
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        return RunConfig.from_dict(data)


def flat_defaults() -> dict[str, Any]:
    """The default of every flat setting (``None`` where there is none), for help texts."""
    defaults: dict[str, Any] = {}
    for flat, path in RunConfig.FLAT_FIELDS.items():
        owner: type[Any] = SECTIONS[path[0]] if len(path) == 2 else RunConfig
        spec = next(f for f in dataclasses.fields(owner) if f.name == path[-1])
        if spec.default is not dataclasses.MISSING:
            defaults[flat] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            defaults[flat] = spec.default_factory()
        else:
            defaults[flat] = None
    return defaults


def _build_section(kind: type[Any], name: str, value: Any) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"config section {name!r} should be a mapping, not {type(value).__name__}.")
    allowed = [f.name for f in dataclasses.fields(kind)]
    for key in value:
        if key not in allowed:
            raise ConfigError(_unknown(f"unknown key {key!r} in section {name!r}", key, allowed))
    try:
        return kind(**value)
    except TypeError as exc:
        raise ConfigError(f"config section {name!r} is incomplete: {exc}.") from None


def _closest_first(key: object, options: Iterable[str]) -> list[str]:
    """``options`` ordered by how close they are to ``key`` (difflib's ratio, best first; ties keep their
    order)."""
    text = str(key).lower()
    return sorted(options, key=lambda option: -difflib.SequenceMatcher(None, text, option).ratio())


def _unknown(problem: str, key: object, options: Iterable[str], kind: str = "keys") -> str:
    """The one-line message for an unknown key: the problem and the valid keys, closest first."""
    return f"{problem}; valid {kind}, closest first: {', '.join(_closest_first(key, options))}."


IMAGE_FORMATS = ("png", "jpg")


@dataclass(kw_only=True)
class ExtractConfig:
    """``framescope extract-frames``: frames of a video, sampled by presentation time, written as images."""

    input: str
    """A video file or stream URL (anything ``run`` reads from a file or URL)."""
    output: str
    """Directory for the images; created if missing."""
    fps: float = 1.0
    """Frames per second of video to keep; fractional values such as 0.5 (one frame every 2 s) work."""
    prefix: str = "frame_"
    """File name prefix; the image index and the frame's time follow: ``frame_000003_00006000ms``."""
    format: str = "png"
    """``png`` or ``jpg``."""
    start_s: float = 0.0
    """Seconds into the video where sampling starts."""
    end_s: float | None = None
    """Seconds into the video where sampling stops (inclusive); None: the end."""
    quality: int = 95
    """JPEG quality, 1-100."""
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _require_text(self.input, "-i/--input is empty; pass the video to extract frames from.")
        _require_text(self.output, "-o/--output is empty; pass a directory for the images.")
        fps = _finite(self.fps)
        if fps is None or fps <= 0:
            raise ConfigError(
                f"--fps {self.fps!r} should be > 0 frames per second of video (finite), e.g. --fps 0.5."
            )
        _choice(self.format, IMAGE_FORMATS, "format", "--format")
        start = _finite(self.start_s)
        if start is None or start < 0:
            raise ConfigError(
                f"--start {self.start_s!r} should be a finite number of seconds >= 0, e.g. --start 60."
            )
        if self.end_s is not None:
            end = _finite(self.end_s)
            if end is None:
                raise ConfigError(
                    f"--end {self.end_s!r} should be a finite number of seconds, e.g. --end 90; leave it out "
                    "to sample to the end of the video."
                )
            if end <= start:
                raise ConfigError(f"--end {self.end_s!r} should be after --start {self.start_s!r}.")
        if (
            isinstance(self.quality, bool)
            or not isinstance(self.quality, int)
            or not 1 <= self.quality <= 100
        ):
            raise ConfigError(f"--quality {self.quality!r} should be an integer from 1 to 100.")
        if os.sep in self.prefix:
            raise ConfigError(f"--prefix {self.prefix!r} should be a file name prefix without '{os.sep}'.")
        _positive_number(
            self.open_timeout_s, "open_timeout_s", "--open-timeout", unit="seconds", example="10"
        )
        _positive_number(
            self.read_timeout_s, "read_timeout_s", "--read-timeout", unit="seconds", example="10"
        )


@dataclass(kw_only=True)
class AnnotateConfig:
    """``framescope annotate``: detect objects in a folder of images; write boxed images and COCO JSON."""

    input: str
    """Directory of images (nested folders and mixed sizes are fine)."""
    output: str
    """Directory for the annotated images (same relative paths) and ``annotations.json``."""
    model_name: str = "fasterrcnn_resnet50_fpn_v2"
    """Any torchvision detection model."""
    threshold: float = 0.7
    """Keep detections scoring at least this (0-1)."""
    batch_size: int = 4
    """Images per forward pass."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    weights: str = "DEFAULT"
    """``DEFAULT`` (torchvision's trained weights, downloaded), a state-dict path, or ``none`` (random)."""
    seed: int = 0
    """Seed for random weights (``--weights none``)."""

    def __post_init__(self) -> None:
        _require_text(self.input, "-i is empty; pass a directory of images.")
        _require_text(self.output, "-o is empty; pass a directory for the annotated images.")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 <= self.threshold <= 1
        ):
            raise ConfigError(f"--threshold {self.threshold!r} should be a score from 0 to 1, e.g. 0.7.")
        _positive_int(self.batch_size, "batch_size", "--batch-size")
        if not (
            self.device in ("auto", "cpu", "cuda")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ConfigError(f"--device {self.device!r} should be auto, cpu, cuda or cuda:N.")
