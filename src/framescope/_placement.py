"""Where each part of a run happens: the devices of preprocessing, the model and post-processing, where
frames arrive, what size they are decoded to, and when a live frame is on time."""

from __future__ import annotations

import torch

from framescope.config import RunConfig, parse_decode_size
from framescope.errors import DeviceError
from framescope.preprocess import InputSpec, resized_size
from framescope.sources import SourceInfo


def resolve_devices(config: RunConfig) -> tuple[torch.device, torch.device, torch.device]:
    """(preprocessing, model, post-processing) devices; asking for CUDA without one is an error, never a
    fallback."""
    for wanted, flag in (
        (config.model.on_gpu, "--infer-on-gpu"),
        (config.preprocess.on_gpu, "--prep-on-gpu"),
        (config.postprocess.on_gpu, "--post-on-gpu"),
        (config.source.decode_on_gpu, "--decode-on-gpu"),
    ):
        if wanted and not torch.cuda.is_available():
            reason = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            )
            raise DeviceError(f"{flag} needs a CUDA GPU, but {reason}; drop {flag} to run on the CPU.")
    cuda = torch.device("cuda")
    cpu = torch.device("cpu")
    return (
        cuda if config.preprocess.on_gpu else cpu,
        cuda if config.model.on_gpu else cpu,
        cuda if config.postprocess.on_gpu else cpu,
    )


def batch_device(config: RunConfig) -> torch.device:
    """Where frames arrive: on the GPU when torchcodec decodes them there, on the host otherwise."""
    on_gpu = config.source.decode_on_gpu and config.source.decoder == "torchcodec"
    return torch.device("cuda" if on_gpu else "cpu")


def decode_size(config: RunConfig, spec: InputSpec, info: SourceInfo) -> tuple[int, int] | None:
    """The (width, height) frames are decoded to: ``--decode-size`` as given, or for ``auto`` the size the
    preprocessing's first resize would produce (never larger than the frame)."""
    size = parse_decode_size(config.source.decode_size)
    if size != "auto":
        return size if isinstance(size, tuple) else None
    if not info.width or not info.height:
        return None
    width, height = resized_size(config.preprocess.level, spec, info.width, info.height)
    return (width, height) if width < info.width and height < info.height else None


def deadline_ms(config: RunConfig, info: SourceInfo) -> float | None:
    """When a live frame's result is on time: ``--deadline-ms``, or the time to fill a batch (all sources
    together; with dynamic batching at most ``--max-delay-ms``) plus one frame interval at a source's rate."""
    if config.deadline_ms is not None:
        return config.deadline_ms
    if not info.live or not info.fps:
        return None
    extra_fps = info.extra.get("source_fps")
    source_fps = float(extra_fps) if isinstance(extra_fps, int | float) and extra_fps > 0 else info.fps
    if config.batching == "fixed" and not isinstance(extra_fps, int | float):  # one source
        return (config.batch_size + 1) * 1000.0 / info.fps
    # info.fps is every source's frames a second together; a frame also waits one interval of its own source
    fill_s = config.largest_batch / info.fps
    if config.batching == "dynamic":
        fill_s = min(fill_s, max_delay_s(config, info))
    return (fill_s + 1.0 / source_fps) * 1000.0


DEFAULT_MAX_DELAY_S = 0.033
"""Dynamic batching's wait for a batch to fill where the source's rate is unknown."""


def max_delay_s(config: RunConfig, info: SourceInfo) -> float:
    """``--max-delay-ms``, or one frame interval at the rate of one source (33 ms where it is unknown)."""
    if config.max_delay_ms is not None:
        return config.max_delay_ms / 1000.0
    fps = info.extra.get("source_fps") or info.fps
    return 1.0 / float(fps) if isinstance(fps, int | float) and fps > 0 else DEFAULT_MAX_DELAY_S


def model_input_device(config: RunConfig, model_device: torch.device) -> torch.device:
    """Where the model's input must be: with --split-point the first part runs on the CPU."""
    return torch.device("cpu") if config.model.split_point else model_device
