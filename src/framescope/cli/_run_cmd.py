"""``framescope run``: the seed worker's command line, every seed flag kept with its meaning."""

from __future__ import annotations

import argparse
from typing import Any

from framescope.config import (
    DECODERS,
    MODES,
    PIPELINES,
    PREP_LEVELS,
    PROGRESS_MODES,
    RunConfig,
    flat_defaults,
)
from framescope.errors import ConfigError

# (option strings, flat setting name, argparse keyword arguments). Help texts end with the default,
# which comes from the config dataclasses so it can never disagree with what runs.
SEED_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (
        ("--model-name",),
        "model_name",
        {
            "metavar": "NAME",
            "help": "torchvision model: resnet50, vit_b_16, ssd300_vgg16, ... (`framescope models`)",
        },
    ),
    (
        ("--input_path", "--input-path"),
        "input_path",
        {
            "metavar": "SOURCE",
            "help": "video file, image directory, camera index (0), rtsp:// or http(s):// URL, "
            "synthetic:WxH[:FRAMES], or sample: (a built-in clip)",
        },
    ),
    (("--mode",), "mode", {"choices": MODES, "help": "inference, or retrain (frozen backbone, new head)"}),
    (("--batch-size",), "batch_size", {"type": int, "metavar": "N", "help": "frames per batch"}),
    (
        ("--prep-level",),
        "prep_level",
        {"choices": PREP_LEVELS, "help": "preprocessing level (the README says what each does)"},
    ),
    (
        ("--prep-on-gpu",),
        "prep_on_gpu",
        {"action": "store_true", "help": "copy the uint8 batch to the GPU and preprocess there"},
    ),
    (("--infer-on-gpu",), "infer_on_gpu", {"action": "store_true", "help": "run the model on the GPU"}),
    (
        ("--core-bind",),
        "core_bind",
        {"metavar": "CORES", "help": "bind to cores: 0-3, 0,2,5 or all; torch threads follow (Linux)"},
    ),
    (
        ("--enable-compile",),
        "enable_compile",
        {"action": "store_true", "help": "wrap the model in torch.compile"},
    ),
    (
        ("--use-amp",),
        "use_amp",
        {"action": "store_true", "help": "mixed precision: float16 on CUDA, bfloat16 on CPU"},
    ),
    (
        ("--max-steps",),
        "max_steps",
        {"type": int, "metavar": "N", "help": "stop after N batches (warm-up included)"},
    ),
    (
        ("--split-point",),
        "split_point",
        {
            "metavar": "MODEL:LAYER",
            "help": "run the model up to LAYER on the CPU, the rest on the model's device; the transfer is "
            "timed (framescope models --split-points MODEL lists layers)",
        },
    ),
]

MORE_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (
        ("--pipeline",),
        "pipeline",
        {
            "choices": PIPELINES,
            "help": "sync: each stage in turn (the seed's loop); async: reading, decoding and preprocessing "
            "run ahead of the model in a producer thread",
        },
    ),
    (
        ("--prefetch",),
        "prefetch",
        {
            "type": int,
            "metavar": "N",
            "help": "async: batches the producer may have ready ahead of the model",
        },
    ),
    (("--output-dir",), "output_dir", {"metavar": "DIR", "help": "parent directory of run directories"}),
    (
        ("--run-name",),
        "run_name",
        {"metavar": "NAME", "help": "this run's directory name (default: MODEL_DATE-TIME_PPID)"},
    ),
    (
        ("--weights",),
        "weights",
        {
            "metavar": "WEIGHTS",
            "help": "none (random, offline), DEFAULT (torchvision download) or a state-dict path",
        },
    ),
    (
        ("--warmup-steps",),
        "warmup_steps",
        {"type": int, "metavar": "N", "help": "leading steps kept out of the summary"},
    ),
    (("--decoder",), "decoder", {"choices": DECODERS, "help": "video decoder"}),
    (
        ("--decode-on-gpu",),
        "decode_on_gpu",
        {
            "action": "store_true",
            "help": "decode with NVDEC (torchcodec keeps frames on the GPU; pyav copies them back)",
        },
    ),
    (
        ("--decode-size",),
        "decode_size",
        {
            "metavar": "WxH",
            "help": "resize while decoding: WIDTHxHEIGHT, or auto for the size preprocessing shrinks to "
            "(default: native size)",
        },
    ),
    (
        ("--post-on-gpu",),
        "post_on_gpu",
        {
            "action": "store_true",
            "help": "post-process (NMS, top-k) on the GPU, then copy only the results back",
        },
    ),
    (
        ("--decode-threads",),
        "decode_threads",
        {"type": int, "metavar": "N", "help": "FFmpeg decoding threads; 0 = one per bound core"},
    ),
    (
        ("--torch-threads",),
        "torch_threads",
        {"type": int, "metavar": "N", "help": "torch intra-op threads (default: one per bound core)"},
    ),
    (
        ("--source-fps",),
        "source_fps",
        {
            "type": float,
            "metavar": "FPS",
            "help": "replay the input as a live camera at FPS frames per second",
        },
    ),
    (
        ("--live-buffer",),
        "live_buffer",
        {
            "type": int,
            "metavar": "N",
            "help": "live inputs: frames kept for the pipeline, oldest dropped; 0: two batches",
        },
    ),
    (
        ("--reconnect-for",),
        "reconnect_for",
        {
            "type": float,
            "metavar": "S",
            "help": "live streams: seconds of reconnecting without a frame before giving up",
        },
    ),
    (
        ("--deadline-ms",),
        "deadline_ms",
        {
            "type": float,
            "metavar": "MS",
            "help": "live inputs: a frame is on time when its result is ready within MS of it being due "
            "(default: (batch size + 1) frame intervals)",
        },
    ),
    (
        ("--open-timeout",),
        "open_timeout",
        {"type": float, "metavar": "S", "help": "seconds to wait for a stream or camera to open"},
    ),
    (
        ("--read-timeout",),
        "read_timeout",
        {"type": float, "metavar": "S", "help": "seconds to wait for a stream's next frame"},
    ),
    (
        ("--torch-profile",),
        "torch_profile",
        {"action": "store_true", "help": "write a torch.profiler trace (also ENABLE_PROFILING=1)"},
    ),
    (
        ("--profile-wait",),
        "profile_wait",
        {"type": int, "metavar": "N", "help": "profiler: steps before warming up"},
    ),
    (
        ("--profile-warmup",),
        "profile_warmup",
        {"type": int, "metavar": "N", "help": "profiler: traced, discarded steps"},
    ),
    (
        ("--profile-active",),
        "profile_active",
        {"type": int, "metavar": "N", "help": "profiler: recorded steps"},
    ),
    (
        ("--num-classes",),
        "num_classes",
        {"type": int, "metavar": "N", "help": "retrain: classes of the new head"},
    ),
    (("--lr",), "lr", {"type": float, "metavar": "LR", "help": "retrain: SGD learning rate"}),
    (("--compile-backend",), "compile_backend", {"metavar": "NAME", "help": "torch.compile backend"}),
    (
        ("--seed",),
        "seed",
        {"type": int, "metavar": "N", "help": "seed for random weights, labels and synthetic frames"},
    ),
    (
        ("--progress",),
        "progress",
        {"choices": PROGRESS_MODES, "help": "auto: a bar on a terminal, log lines otherwise"},
    ),
]


def _shown_default(dest: str, default: Any) -> str:
    if dest in ("model_name", "input_path"):
        return "required"
    if default is None:
        return "until the input ends" if dest == "max_steps" else "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = flat_defaults()
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML run config (the shape of a run's config.yaml); flags given as well override it",
    )
    for title, flags in (("the seed worker's flags", SEED_FLAGS), ("more", MORE_FLAGS)):
        group = parser.add_argument_group(title)
        for options, dest, spec in flags:
            text = spec["help"]
            if "(default:" not in text:
                text = f"{text} (default: {_shown_default(dest, defaults.get(dest))})"
            group.add_argument(*options, dest=dest, default=argparse.SUPPRESS, **{**spec, "help": text})


def config_from_args(args: argparse.Namespace) -> RunConfig:
    given = {k: v for k, v in vars(args).items() if k in RunConfig.FLAT_FIELDS}
    split_model = (given.get("split_point") or "").rpartition(":")[0]
    if split_model and "model_name" not in given and not getattr(args, "config", None):
        given["model_name"] = split_model  # the seed's --split-point resnet50:layer3 names the model
    config_file = getattr(args, "config", None)
    if config_file:
        return RunConfig.from_yaml(config_file).replace(**given)
    for required, flag in (("model_name", "--model-name"), ("input_path", "--input_path")):
        if required not in given:
            raise ConfigError(f"{flag} is required (or pass --config FILE); see framescope run --help.")
    return RunConfig.from_flat(**given)


def run_command(args: argparse.Namespace) -> int:
    from framescope._run import run
    from framescope.cli._progress import ConsoleObserver

    config = config_from_args(args)
    result = run(config, observer=ConsoleObserver(mode=config.progress))
    return 0 if result.status == "complete" else 1
