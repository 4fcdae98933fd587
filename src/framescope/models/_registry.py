"""Models by name: which torchvision models exist, what task they do, what input they expect, and building
them with random, downloaded or user-supplied weights."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io
import os
import sys
import warnings
from functools import cache
from typing import Any

import torch
from torch import nn

from framescope.errors import ModelError
from framescope.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec

TASKS = ("classification", "detection", "segmentation")


@cache
def models_by_task() -> dict[str, tuple[str, ...]]:
    """Supported torchvision model names, grouped by task."""
    import torchvision.models as tvm
    from torchvision.models import detection, list_models, segmentation

    return {
        "classification": tuple(list_models(module=tvm)),
        "detection": tuple(list_models(module=detection)),
        "segmentation": tuple(list_models(module=segmentation)),
    }


def task_of(name: str) -> str:
    """The task of a supported model; a :class:`ModelError` with close names for anything else."""
    from torchvision.models import list_models

    for task, names in models_by_task().items():
        if name in names:
            return task
    if name in list_models():
        raise ModelError(
            f"model {name!r} is a video, optical-flow or quantized model, which framescope does not run yet; "
            "pick a classification, detection or segmentation model (framescope models lists them)."
        )
    every = [n for names in models_by_task().values() for n in names]
    close = difflib.get_close_matches(name.lower(), every, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ModelError(f"unknown model {name!r}; {hint}Run `framescope models` to list every supported name.")


def input_spec(name: str, model: nn.Module) -> InputSpec:
    """What ``model`` expects, from its weights' reference transform or its own input transform."""
    from torchvision.models import get_model_weights

    task = task_of(name)
    if task == "detection":
        transform: Any = getattr(model, "transform", None)
        min_size = int(transform.min_size[-1]) if transform is not None else 800
        max_size = int(transform.max_size) if transform is not None else 1333
        fixed = getattr(transform, "fixed_size", None)
        if fixed:
            width, height = int(fixed[0]), int(fixed[1])
            return InputSpec(task, (height, width), resize=min(height, width), mean=None, std=None)
        return InputSpec(task, None, resize=min_size, max_size=max_size, mean=None, std=None)
    preset = get_model_weights(name).DEFAULT.transforms
    keywords: dict[str, Any] = dict(getattr(preset, "keywords", {}))
    mean = tuple(keywords.get("mean", IMAGENET_MEAN))
    std = tuple(keywords.get("std", IMAGENET_STD))
    if task == "segmentation":
        return InputSpec(task, None, resize=int(keywords.get("resize_size") or 520), mean=mean, std=std)
    crop = int(keywords.get("crop_size", 224))
    resize = int(keywords.get("resize_size", 256))
    return InputSpec(task, (crop, crop), resize=resize, mean=mean, std=std)


def _builder_accepts(name: str, parameter: str) -> bool:
    from torchvision.models import get_model_builder

    return parameter in inspect.signature(get_model_builder(name)).parameters


def _clean_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a checkpoint holding one; drop DDP and torch.compile prefixes."""
    state = obj
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict")
    cleaned = {}
    for key, value in state.items():
        name = key
        for prefix in ("module.", "_orig_mod."):
            name = name.removeprefix(prefix)
        cleaned[name] = value
    return cleaned


def _checkpoints_in(directory: str) -> list[str]:
    """The files in ``directory`` that look like saved weights, by name."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    paths = [os.path.join(directory, n) for n in names if n.endswith((".pt", ".pth", ".ckpt", ".bin"))]
    return [p for p in paths if os.path.isfile(p)]


def load_weights_file(model: nn.Module, name: str, path: str) -> None:
    """Load a state dict saved with ``torch.save(model.state_dict(), path)`` safely (``weights_only``)."""
    if os.path.isdir(path):
        found = _checkpoints_in(path)
        fix = f"e.g. --weights {found[0]}" if found else "saved with torch.save(model.state_dict(), path)"
        raise ModelError(
            f"weights path {path!r} is a directory, not a file; pass a state-dict file ({fix}), or "
            "--weights none or DEFAULT."
        )
    if not os.path.isfile(path):
        raise ModelError(
            f"weights file {path!r} does not exist; pass --weights none, DEFAULT or a state-dict path."
        )
    try:
        # torch warns (on stderr, over two lines) about pickles of an unexpected protocol before failing or
        # loading them; the user gets this function's one-line error instead, or nothing when it loads.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
        state = _clean_state_dict(obj)
    except Exception as exc:  # torch.load raises many types for foreign files
        raise ModelError(
            f"weights file {path!r} is not a PyTorch state dict ({type(exc).__name__}); save one with "
            "torch.save(model.state_dict(), path)."
        ) from None
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing ({', '.join(result.missing_keys[:3])}...)")
    if result.unexpected_keys:
        problems.append(
            f"{len(result.unexpected_keys)} unexpected ({', '.join(result.unexpected_keys[:3])}...)"
        )
    if problems:
        raise ModelError(
            f"weights file {path!r} does not match {name}: {'; '.join(problems)} keys; was it saved from "
            "another model?"
        )


def build_model(name: str, weights: str = "none", *, seed: int = 0) -> nn.Module:
    """Build ``name`` on the CPU with random weights (``none``), torchvision's ``DEFAULT`` download or a
    state-dict path."""
    from torchvision.models import get_model

    task_of(name)
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if weights.lower() == "default":
        from torchvision.models import get_model_weights

        watching = sys.stdout.isatty()
        # torch.hub writes "Downloading: URL" to stdout whatever `progress` says; only show it (and the
        # progress bar) to someone watching a terminal. The URL is in the error message either way.
        quiet = contextlib.nullcontext() if watching else contextlib.redirect_stdout(io.StringIO())
        try:
            with quiet:
                return get_model(name, weights="DEFAULT", progress=watching)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            url = get_model_weights(name).DEFAULT.url
            raise ModelError(
                f"could not download the DEFAULT weights of {name} from {url} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no network?'}); pass "
                "--weights PATH to a saved state dict, or --weights none for random weights."
            ) from None
    if _builder_accepts(name, "weights_backbone"):
        # Detection and segmentation builders otherwise download ImageNet backbone weights.
        kwargs["weights_backbone"] = None
    if name in ("inception_v3", "googlenet"):
        kwargs["init_weights"] = True
    try:
        model = get_model(name, weights=None, **kwargs)
    except torch.OutOfMemoryError:
        raise ModelError(f"not enough memory to build {name}; pick a smaller model.") from None
    if weights.lower() != "none":
        load_weights_file(model, name, weights)
    return model
