"""Typed, validated configuration: one kw-only dataclass per component, merged into :class:`RunConfig`.

The CLI, YAML files and the Python API all build these same objects; defaults live here and nowhere else.
Each setting is declared once, on its field (:func:`setting`): its default, flag, help text and help group;
a ``Literal`` annotation gives its choices. The flat names (:attr:`RunConfig.FLAT_FIELDS`) and the commands'
parsers (``framescope.cli._flags``) are derived from those declarations.
This module must stay free of torch and of I/O beyond reading a config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, overload

import yaml

from framescope.errors import ConfigError

SEED_WORKER = "the seed worker's flags"
"""The help group of the flags the seed's worker script had; ``framescope run --help`` lists it first."""

_T = TypeVar("_T")
_SETTING = "framescope.setting"  # the key of a field's Setting in its metadata


@dataclass(frozen=True, kw_only=True)
class Setting:
    """How one config field meets the command line; :func:`setting` declares it on the field."""

    flag: str | None
    """The long option, e.g. ``--batch-size``; None keeps the field off the command line. Without its
    dashes and with ``_`` for ``-`` it is the field's flat name (``batch_size``), as in
    :meth:`RunConfig.from_flat`."""
    help: str
    """The setting's one description, shown by ``--help`` (followed there by the default)."""
    aliases: tuple[str, ...] = ()
    """More option strings: a short one (``-i``) or another spelling (``--input-path``)."""
    metavar: str | None = None
    """The value's name in ``--help``; None: the flat name in capitals (choices show as ``{a,b}``)."""
    group: str | None = None
    """The ``--help`` group; None: the command's default one."""
    default_text: str | None = None
    """How ``--help`` shows the default when the value alone would not say it (what ``None`` means)."""

    @property
    def options(self) -> tuple[str, ...]:
        """The option strings, short ones first (argparse shows them in this order)."""
        if self.flag is None:
            return ()
        short = tuple(a for a in self.aliases if not a.startswith("--"))
        return (*short, self.flag, *(a for a in self.aliases if a.startswith("--")))


@overload
def setting(
    default: _T,
    *,
    flag: str | None,
    help: str,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    group: str | None = None,
    default_text: str | None = None,
) -> _T: ...
@overload
def setting(
    *,
    flag: str | None,
    help: str,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    group: str | None = None,
    default_text: str | None = None,
) -> Any: ...
def setting(
    default: Any = dataclasses.MISSING,
    *,
    flag: str | None,
    help: str,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    group: str | None = None,
    default_text: str | None = None,
) -> Any:
    """A config field: its default (none: the setting is required) and how it meets the command line (see
    :class:`Setting`)."""
    spec = Setting(
        flag=flag, help=help, aliases=aliases, metavar=metavar, group=group, default_text=default_text
    )
    return field(default=default, metadata={_SETTING: spec})


@dataclass(frozen=True)
class FlatSetting:
    """One setting of a config class, found by :func:`flat_settings`."""

    name: str
    """The flat name: ``model_name``, ``batch_size``, ``open_timeout``."""
    path: tuple[str, ...]
    """Where it lives in the nested config: ``("model", "name")``, ``("batch_size",)``."""
    type: Any
    """The value's type, without ``| None``: ``int``, ``str``, ``Literal["sync", "async"]``, ..."""
    default: Any
    """The field's default; ``dataclasses.MISSING`` when the setting is required."""
    spec: Setting

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values of a ``Literal`` setting; None for any other."""
        return get_args(self.type) if get_origin(self.type) is Literal else None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _without_none(hint: Any) -> Any:
    """``X`` for ``X | None``; any other type unchanged."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _choices_of(kind: type[Any], name: str) -> tuple[str, ...]:
    """The values the ``Literal`` annotation of field ``name`` of ``kind`` allows."""
    return get_args(_without_none(typing.get_type_hints(kind)[name]))


def flat_settings(kind: type[Any]) -> tuple[FlatSetting, ...]:
    """Every setting of the config class ``kind`` in field order, a section's settings in its place."""
    found: list[FlatSetting] = []
    hints = typing.get_type_hints(kind)
    for spec_field in dataclasses.fields(kind):
        hint = hints[spec_field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            found += [dataclasses.replace(s, path=(spec_field.name, *s.path)) for s in flat_settings(hint)]
            continue
        spec = spec_field.metadata.get(_SETTING)
        if not isinstance(spec, Setting):
            raise TypeError(f"{kind.__name__}.{spec_field.name} is not declared with setting(...)")
        name = spec.flag.lstrip("-").replace("-", "_") if spec.flag else spec_field.name
        found.append(FlatSetting(name, (spec_field.name,), _without_none(hint), spec_field.default, spec))
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise TypeError(f"{kind.__name__}: more than one field has the flat name {', '.join(twice)}")
    return tuple(found)


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

    input_path: str | list[str] = setting(  # noqa: RUF009 (required: setting() gives it no default)
        flag="--input_path",
        aliases=("--input-path",),
        metavar="SOURCE",
        group=SEED_WORKER,
        help="video file, image directory, camera index (0), rtsp:// or http(s):// URL, "
        "synthetic:WxH[:FRAMES], or sample: (a built-in clip); give it several times (a list in YAML) for "
        "several live sources in one run",
    )
    cameras: int = setting(
        1,
        flag="--cameras",
        metavar="N",
        help="replicate each input N times as separate live sources, each offset in time (a --source-fps "
        "replay or a stream)",
    )
    decoder: Literal["opencv", "pyav", "torchcodec"] = setting(
        "opencv", flag="--decoder", help="video decoder"
    )
    decode_threads: int = setting(
        0,
        flag="--decode-threads",
        metavar="N",
        help="FFmpeg decoding threads; 0: one per bound core with --pipeline sync, one with --pipeline async",
    )
    decode_on_gpu: bool = setting(
        False,
        flag="--decode-on-gpu",
        help="decode with NVDEC (torchcodec keeps frames on the GPU; pyav copies them back)",
    )
    decode_size: str | None = setting(
        None,
        flag="--decode-size",
        metavar="WxH",
        help="resize while decoding: WIDTHxHEIGHT, or auto for the size preprocessing shrinks to",
        default_text="native size",
    )
    open_timeout_s: float = setting(
        10.0, flag="--open-timeout", metavar="S", help="seconds to wait for a stream or camera to open"
    )
    read_timeout_s: float = setting(
        10.0, flag="--read-timeout", metavar="S", help="seconds to wait for a stream's next frame"
    )
    source_fps: float | None = setting(
        None,
        flag="--source-fps",
        metavar="FPS",
        help="replay the input as a live camera at FPS frames per second",
    )
    loop: bool = setting(
        False,
        flag="--loop",
        help="--source-fps: replay the file again from its start each time it ends (a camera that never "
        "stops; the run ends with --max-steps, Ctrl-C or an observer)",
    )
    live_buffer: int = setting(
        0,
        flag="--live-buffer",
        metavar="N",
        help="live inputs: frames kept for the pipeline, oldest dropped; 0: two batches",
    )
    reconnect_for_s: float = setting(
        60.0,
        flag="--reconnect-for",
        metavar="S",
        help="live streams: seconds of reconnecting without a frame before giving up",
    )

    def __post_init__(self) -> None:
        if isinstance(self.input_path, list | tuple):
            if not self.input_path:
                raise ConfigError(
                    "input_path is an empty list; give at least one input, e.g. [a.mp4, b.mp4]."
                )
            paths = list(self.input_path)
            self.input_path = paths[0] if len(paths) == 1 else paths
        for path in self.inputs:
            _require_text(
                path,
                "input_path is empty; pass --input_path VIDEO (a file, camera index, URL or directory).",
            )
        _positive_int(self.cameras, "cameras", "--cameras")
        _choice(self.decoder, DECODERS, "decoder", "--decoder")
        _non_negative_int(self.decode_threads, "decode_threads", "--decode-threads")
        parse_decode_size(self.decode_size)
        if self.source_fps is not None:
            _positive_number(
                self.source_fps, "source_fps", "--source-fps", unit="frames per second", example="30"
            )
        _non_negative_int(self.live_buffer, "live_buffer", "--live-buffer")
        if self.loop and self.source_fps is None:
            raise ConfigError(
                "--loop replays a file as a camera that never ends; it needs --source-fps N (e.g. "
                "--source-fps 30)."
            )
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

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every ``--input_path`` given, in order (one for an ordinary run; ``--cameras`` not applied)."""
        return (self.input_path,) if isinstance(self.input_path, str) else tuple(self.input_path)

    @property
    def source_count(self) -> int:
        """How many live sources the run reads: the inputs times ``--cameras``."""
        return len(self.inputs) * self.cameras


DECODERS = _choices_of(SourceConfig, "decoder")


@dataclass(kw_only=True)
class PreprocessConfig:
    """How a uint8 batch becomes the model's input."""

    level: Literal["simple", "medium", "complex"] = setting(
        "medium",
        flag="--prep-level",
        group=SEED_WORKER,
        help="preprocessing level (the README says what each does)",
    )
    on_gpu: bool = setting(
        False,
        flag="--prep-on-gpu",
        group=SEED_WORKER,
        help="copy the uint8 batch to the GPU and preprocess there",
    )

    def __post_init__(self) -> None:
        _choice(self.level, PREP_LEVELS, "prep_level", "--prep-level")


PREP_LEVELS = _choices_of(PreprocessConfig, "level")


@dataclass(kw_only=True)
class PostprocessConfig:
    """How the model's raw output becomes results (top-5 classes, detections after NMS, class maps)."""

    on_gpu: bool = setting(
        False,
        flag="--post-on-gpu",
        help="post-process (NMS, top-k) on the GPU, then copy only the results back",
    )


@dataclass(kw_only=True)
class ModelConfig:
    """Which model runs, where, and how."""

    name: str = setting(
        flag="--model-name",
        metavar="NAME",
        group=SEED_WORKER,
        help="torchvision model: resnet50, vit_b_16, ssd300_vgg16, ... (`framescope models`)",
    )
    mode: Literal["inference", "retrain"] = setting(
        "inference",
        flag="--mode",
        group=SEED_WORKER,
        help="inference, or retrain (frozen backbone, new head)",
    )
    weights: str = setting(
        "none",
        flag="--weights",
        metavar="WEIGHTS",
        help="none (random, offline), DEFAULT (torchvision download) or a state-dict path",
    )
    on_gpu: bool = setting(False, flag="--infer-on-gpu", group=SEED_WORKER, help="run the model on the GPU")
    compile: bool = setting(
        False, flag="--enable-compile", group=SEED_WORKER, help="wrap the model in torch.compile"
    )
    compile_backend: str = setting(
        "inductor", flag="--compile-backend", metavar="NAME", help="torch.compile backend"
    )
    amp: bool = setting(
        False,
        flag="--use-amp",
        group=SEED_WORKER,
        help="mixed precision: float16 on CUDA, bfloat16 on CPU",
    )
    num_classes: int = setting(10, flag="--num-classes", metavar="N", help="retrain: classes of the new head")
    learning_rate: float = setting(0.01, flag="--lr", metavar="LR", help="retrain: SGD learning rate")
    split_point: str | None = setting(
        None,
        flag="--split-point",
        metavar="MODEL:LAYER",
        group=SEED_WORKER,
        help="run the model up to LAYER on the CPU, the rest on the model's device; the transfer is timed "
        "(framescope models --split-points MODEL lists layers)",
    )
    backend: Literal["torch", "onnxruntime"] = setting(
        "torch",
        flag="--backend",
        help="torch, or onnxruntime: the model exported to ONNX (cached) and run by an ONNX Runtime session "
        "(pip install 'framescope[onnx]')",
    )

    def __post_init__(self) -> None:
        _require_text(self.name, "model name is empty; pass --model-name, e.g. --model-name resnet50.")
        _choice(self.mode, MODES, "mode", "--mode")
        _choice(self.backend, BACKENDS, "backend", "--backend")
        if self.backend == "onnxruntime":
            for wanted, flag in (
                (self.mode == "retrain", "--mode retrain"),
                (self.compile, "--enable-compile"),
                (self.split_point is not None, "--split-point"),
                (self.amp, "--use-amp"),
            ):
                if wanted:
                    raise ConfigError(
                        f"{flag} needs the torch model, but --backend onnxruntime runs an exported ONNX "
                        f"graph (inference only, float32, one device); drop {flag} or use --backend torch."
                    )
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


MODES = _choices_of(ModelConfig, "mode")
BACKENDS = _choices_of(ModelConfig, "backend")


@dataclass(kw_only=True)
class ProfileConfig:
    """The torch.profiler window (wait, warm-up and active steps), written as a Chrome/Perfetto trace."""

    enabled: bool = setting(
        False,
        flag="--torch-profile",
        help="write a torch.profiler trace (also ENABLE_PROFILING=1)",
    )
    wait: int = setting(1, flag="--profile-wait", metavar="N", help="profiler: steps before warming up")
    warmup: int = setting(1, flag="--profile-warmup", metavar="N", help="profiler: traced, discarded steps")
    active: int = setting(3, flag="--profile-active", metavar="N", help="profiler: recorded steps")

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
    batch_size: int = setting(1, flag="--batch-size", metavar="N", group=SEED_WORKER, help="frames per batch")
    pipeline: Literal["sync", "async"] = setting(
        "sync",
        flag="--pipeline",
        help="sync: each stage in turn (the seed's loop); async: reading, decoding and preprocessing run "
        "ahead of the model in a producer thread",
    )
    prefetch: int = setting(
        2,
        flag="--prefetch",
        metavar="N",
        help="async: batches the producer may have ready ahead of the model",
    )
    deadline_ms: float | None = setting(
        None,
        flag="--deadline-ms",
        metavar="MS",
        help="live inputs: a frame is on time when its result is ready within MS of it being due",
        default_text="(batch size + 1) frame intervals",
    )
    batching: Literal["fixed", "dynamic"] = setting(
        "fixed",
        flag="--batching",
        help="fixed: batches of --batch-size frames (round-robin across sources); dynamic: a batch of the "
        "frames that have arrived, up to --max-batch, waiting at most --max-delay-ms after the oldest",
    )
    max_batch: int | None = setting(
        None,
        flag="--max-batch",
        metavar="B",
        help="--batching dynamic: the largest batch",
        default_text="--batch-size",
    )
    max_delay_ms: float | None = setting(
        None,
        flag="--max-delay-ms",
        metavar="MS",
        help="--batching dynamic: the longest a frame waits for a batch to fill",
        default_text="one frame interval at the source's rate (33 ms where unknown)",
    )
    max_steps: int | None = setting(
        None,
        flag="--max-steps",
        metavar="N",
        group=SEED_WORKER,
        help="stop after N batches (warm-up included)",
        default_text="until the input ends",
    )
    warmup_steps: int = setting(
        2, flag="--warmup-steps", metavar="N", help="leading steps kept out of the summary"
    )
    core_bind: str = setting(
        "all",
        flag="--core-bind",
        metavar="CORES",
        group=SEED_WORKER,
        help="bind to cores: 0-3, 0,2,5 or all; torch threads follow (Linux)",
    )
    torch_threads: int | None = setting(
        None,
        flag="--torch-threads",
        metavar="N",
        help="torch intra-op threads",
        default_text="one per bound core",
    )
    output_dir: str = setting(
        "runs", flag="--output-dir", metavar="DIR", help="parent directory of run directories"
    )
    run_name: str | None = setting(
        None,
        flag="--run-name",
        metavar="NAME",
        help="this run's directory name",
        default_text="MODEL_DATE-TIME_PPID",
    )
    seed: int = setting(
        0, flag="--seed", metavar="N", help="seed for random weights, labels and synthetic frames"
    )
    malloc: Literal["default", "retain"] = setting(
        "default",
        flag="--malloc",
        help="retain: glibc's malloc keeps freed memory for reuse instead of mapping large buffers afresh "
        "every step (no page faults; the process keeps its peak memory; process-wide); default: as it is",
    )
    progress: Literal["auto", "bar", "log", "none"] = setting(
        "auto", flag="--progress", help="auto: a bar on a terminal, log lines otherwise"
    )
    multi_model: Literal["serial", "threads", "asyncio", "asyncio-threads", "processes", "streams", "all"] = (
        setting(
            "serial",
            flag="--multi-model",
            help="several models (--model-name a,b): serial, threads, asyncio (each blocking call awaited, "
            "as the seed wrote it: no overlap), asyncio-threads (asyncio.to_thread), processes, streams "
            "(one CUDA stream each), or all of them in turn",
        )
    )
    solo_steps: int = setting(
        5,
        flag="--solo-steps",
        metavar="N",
        help="several models: batches each model first runs alone, for its interference figure; 0: none",
    )
    models: tuple[ModelConfig, ...] | None = setting(
        None,
        flag=None,
        help="several models per frame, each a model section of its own (YAML; its unset keys are the "
        "model section's); --model-name a,b names them on the command line",
    )

    FLAT_FIELDS: ClassVar[dict[str, tuple[str, ...]]]
    """Flat name (the seed's flag with underscores) -> path in the nested config, from the fields' settings;
    set below the class."""

    def __post_init__(self) -> None:
        _positive_int(self.batch_size, "batch_size", "--batch-size")
        _choice(self.pipeline, PIPELINES, "pipeline", "--pipeline")
        _positive_int(self.prefetch, "prefetch", "--prefetch")
        if self.deadline_ms is not None:
            _positive_number(
                self.deadline_ms, "deadline_ms", "--deadline-ms", unit="milliseconds", example="100"
            )
        self._check_batching()
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
        _choice(self.malloc, MALLOC_MODES, "malloc", "--malloc")
        self._settle_models()

    def _check_batching(self) -> None:
        _choice(self.batching, BATCHING_MODES, "batching", "--batching")
        if self.max_batch is not None:
            _positive_int(self.max_batch, "max_batch", "--max-batch")
        if self.max_delay_ms is not None:
            _positive_number(
                self.max_delay_ms, "max_delay_ms", "--max-delay-ms", unit="milliseconds", example="33"
            )
        if self.batching == "fixed":
            for value, flag in ((self.max_batch, "--max-batch"), (self.max_delay_ms, "--max-delay-ms")):
                if value is not None:
                    raise ConfigError(
                        f"{flag} shapes dynamic batches; pass --batching dynamic, or drop {flag} (fixed "
                        "batches hold --batch-size frames)."
                    )

    @property
    def largest_batch(self) -> int:
        """The most frames a batch holds: ``--max-batch`` with dynamic batching, else ``--batch-size``."""
        if self.batching == "dynamic" and self.max_batch is not None:
            return self.max_batch
        return self.batch_size

    # --- several models per frame ---------------------------------------------------------------------

    def _settle_models(self) -> None:
        """Build the ``models`` entries (over the model section), keep ``model.name`` their comma list, and
        refuse what several models per frame cannot do."""
        _choice(self.multi_model, MULTI_MODEL_STRATEGIES, "multi_model", "--multi-model")
        _non_negative_int(self.solo_steps, "solo_steps", "--solo-steps")
        if self.models is not None:
            if not isinstance(self.models, list | tuple) or not self.models:
                raise ConfigError(
                    "models should be a non-empty list of model sections, e.g. models: [{name: resnet18}, "
                    "{name: mobilenet_v3_small}]."
                )
            inherited = {f.name: getattr(self.model, f.name) for f in dataclasses.fields(ModelConfig)}
            built = tuple(_model_entry(entry, index, inherited) for index, entry in enumerate(self.models))
            self.models = built
            self.model.name = ",".join(m.name for m in built)
        names = split_model_names(self.model.name)
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(
                f"--model-name {self.model.name!r} names {', '.join(twice)} more than once; name each model "
                "once (their CSV files are named by model)."
            )
        if len(names) == 1:
            if self.multi_model != "serial":
                raise ConfigError(
                    f"--multi-model {self.multi_model} needs several models; pass --model-name a,b (or drop "
                    "--multi-model to run one model)."
                )
            return
        refused = (
            (self.source.source_count > 1, "several sources", "one --input_path"),
            (self.batching == "dynamic", "--batching dynamic", "--batching fixed"),
            (self.pipeline == "async", "--pipeline async", "--pipeline sync"),
            (self.model.mode == "retrain", "--mode retrain", "--mode inference"),
            (self.model.split_point is not None, "--split-point", "no --split-point"),
        )
        for wanted, flag, fix in refused:
            if wanted:
                raise ConfigError(
                    f"{flag} runs one model; several models per frame ({self.model.name}) need {fix}."
                )
        if self.multi_model == "streams" and not all(m.on_gpu for m in self.model_list):
            raise ConfigError(
                "--multi-model streams runs each model on a CUDA stream: pass --infer-on-gpu (on a machine "
                "with a GPU), or pick threads."
            )

    @property
    def model_list(self) -> list[ModelConfig]:
        """Every model the run runs on each frame, in order: one for an ordinary run."""
        if self.models:
            return list(self.models)
        names = split_model_names(self.model.name)
        if len(names) == 1:
            return [self.model]
        return [dataclasses.replace(self.model, name=name) for name in names]

    @property
    def several_models(self) -> bool:
        return len(split_model_names(self.model.name)) > 1

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
        if "model" not in kwargs and isinstance(data.get("models"), list) and data["models"]:
            entries = data["models"]  # the model section is the entries' common part; alone, its name
            names = [e.get("name", "") if isinstance(e, dict) else "" for e in entries]
            kwargs["model"] = ModelConfig(name=",".join(str(n) for n in names) or "?")
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
        """A plain nested dict, the shape of ``config.yaml``. ``models`` entries hold their name and what
        differs from the model section: a change to the section reaches every entry that does not set it."""
        data = dataclasses.asdict(self)
        if self.models:
            base = data["model"]
            data["models"] = [
                {k: v for k, v in entry.items() if k == "name" or v != base.get(k)}
                for entry in data["models"]
            ]
        return data

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
        if "model_name" in flat and "models" not in flat and data.get("models"):
            # new names: entries kept for the names still there, a plain entry for a new one
            names = split_model_names(str(flat["model_name"]))
            by_name = {entry["name"]: entry for entry in data["models"]}
            data["models"] = [by_name.get(n, {"name": n}) for n in names] if len(names) > 1 else None
        return RunConfig.from_dict(data)


RunConfig.FLAT_FIELDS = {s.name: s.path for s in flat_settings(RunConfig)}
PIPELINES = _choices_of(RunConfig, "pipeline")
PROGRESS_MODES = _choices_of(RunConfig, "progress")
BATCHING_MODES = _choices_of(RunConfig, "batching")
MALLOC_MODES = _choices_of(RunConfig, "malloc")
MULTI_MODEL_STRATEGIES = _choices_of(RunConfig, "multi_model")


def split_model_names(text: str) -> list[str]:
    """``--model-name a,b,c`` as its names; an empty piece (``a,,b``) is an error."""
    names = [name.strip() for name in str(text).split(",")]
    if len(names) > 1 and not all(names):
        raise ConfigError(
            f"--model-name {text!r} has an empty name; separate model names with single commas: a,b,c."
        )
    return names


def _model_entry(entry: object, index: int, inherited: dict[str, Any]) -> ModelConfig:
    """One ``models:`` entry: a model section whose unset keys are the model section's."""
    if isinstance(entry, ModelConfig):
        return entry
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ConfigError(
            f"models[{index}] = {entry!r} should be a model section with a name, e.g. {{name: resnet18}}."
        )
    allowed = list(inherited)
    for key in entry:
        if key not in allowed:
            raise ConfigError(_unknown(f"unknown key {key!r} in models[{index}]", key, allowed))
    if "," in str(entry["name"]):
        raise ConfigError(f"models[{index}] name {entry['name']!r} should be one model name, without commas.")
    return ModelConfig(**{**inherited, **entry})


def flat_defaults() -> dict[str, Any]:
    """The default of every flat setting (``None`` where there is none), for help texts."""
    return {s.name: None if s.required else s.default for s in flat_settings(RunConfig)}


def flat_values(config: RunConfig) -> dict[str, Any]:
    """Every flat setting of ``config`` and its value."""
    values: dict[str, Any] = {}
    for found in flat_settings(RunConfig):
        value: Any = config
        for part in found.path:
            value = getattr(value, part)
        values[found.name] = value
    return values


def flags_for(settings: dict[str, Any]) -> list[str]:
    """The command-line flags that set ``settings`` (flat names): ``{"decoder": "pyav", "use_amp": True}`` ->
    ``["--decoder", "pyav", "--use-amp"]``. A switch set to False, or a setting set to None (its default),
    is left out: there is no flag for it, leaving it out is how it is asked for."""
    known = {s.name: s for s in flat_settings(RunConfig)}
    flags: list[str] = []
    for name, value in settings.items():
        found = known.get(name)
        if found is None or found.spec.flag is None:
            raise ConfigError(_unknown(f"unknown setting {name!r}", name, known, "settings"))
        if isinstance(value, bool):
            if value:
                flags.append(found.spec.flag)
            continue
        if value is None:
            continue
        if isinstance(value, list | tuple):  # a setting given several times (--input_path a --input_path b)
            for item in value:
                flags += [found.spec.flag, str(item)]
            continue
        flags += [found.spec.flag, str(value)]
    return flags


def command_line(config: RunConfig, program: str = "framescope run") -> str:
    """A shell command that runs ``config``: the settings that differ from the defaults, as flags."""
    import shlex

    defaults = flat_defaults()
    flagged = {s.name for s in flat_settings(RunConfig) if s.spec.flag}  # models: --model-name says them
    changed = {
        name: value
        for name, value in flat_values(config).items()
        if value != defaults.get(name) and name in flagged
    }
    return " ".join([program, *(shlex.quote(part) for part in flags_for(changed))])


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


@dataclass(kw_only=True)
class ExtractConfig:
    """``framescope extract-frames``: frames of a video, sampled by presentation time, written as images."""

    input: str = setting(flag="--input", aliases=("-i",), metavar="VIDEO", help="video file or stream URL")
    output: str = setting(flag="--output", aliases=("-o",), metavar="DIR", help="directory for the images")
    fps: float = setting(
        1.0, flag="--fps", help="frames per second of video to keep; 0.5 keeps one frame every 2 s"
    )
    prefix: str = setting("frame_", flag="--prefix", help="file name prefix")
    format: Literal["png", "jpg"] = setting("png", flag="--format", help="image format")
    start_s: float = setting(0.0, flag="--start", metavar="S", help="start at S seconds")
    end_s: float | None = setting(
        None, flag="--end", metavar="S", help="stop after S seconds", default_text="the end"
    )
    quality: int = setting(95, flag="--quality", metavar="Q", help="JPEG quality 1-100")
    open_timeout_s: float = setting(10.0, flag="--open-timeout", metavar="S", help="stream open time-out")
    read_timeout_s: float = setting(10.0, flag="--read-timeout", metavar="S", help="stream read time-out")

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


IMAGE_FORMATS = _choices_of(ExtractConfig, "format")


@dataclass(kw_only=True)
class AnnotateConfig:
    """``framescope annotate``: detect objects in a folder of images; write boxed images and COCO JSON."""

    input: str = setting(
        flag="--input", aliases=("-i",), metavar="DIR", help="directory of images (nested is fine)"
    )
    output: str = setting(
        flag="--output",
        aliases=("-o",),
        metavar="DIR",
        help="directory for annotated images and annotations.json",
    )
    model_name: str = setting(
        "fasterrcnn_resnet50_fpn_v2",
        flag="--model_name",
        aliases=("--model-name",),
        metavar="NAME",
        help="torchvision detection model",
    )
    threshold: float = setting(0.7, flag="--threshold", help="minimum score kept")
    batch_size: int = setting(4, flag="--batch-size", metavar="N", help="images per forward pass")
    device: str = setting("auto", flag="--device", help="auto (CUDA when available), cpu, cuda or cuda:N")
    weights: str = setting(
        "DEFAULT",
        flag="--weights",
        help="DEFAULT (torchvision's trained weights, downloaded), a state-dict path, or none (random)",
    )
    seed: int = setting(0, flag=None, help="seed for random weights (--weights none)")

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
