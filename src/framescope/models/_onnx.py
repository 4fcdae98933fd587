"""The ONNX Runtime backend: a torchvision model exported with ``torch.onnx`` (cached), run by an
``onnxruntime.InferenceSession``.

The export uses torch.onnx's ``torch.export``-based exporter (the default since torch 2.9; the TorchScript one
is deprecated), which needs ``onnxscript``. The input's batch axis is dynamic, and for segmentation models
its height and width too (their input size follows the frames), so one file serves every batch size. Files
are cached under ``$FRAMESCOPE_CACHE/onnx`` (default ``~/.cache/framescope/onnx``), keyed by what changes the
graph or its weights: model, weights (a file by path, size and modification time; random weights by seed),
input shape, opset and the exporter's versions. A file is written under a temporary name and renamed, so a
killed export leaves no half file under the final name; a cached file that fails ONNX's checker is exported
again.

Inputs on the GPU are bound with ``io_binding`` (the session reads and writes torch's CUDA memory, on torch's
current stream); on the CPU ``session.run`` takes a NumPy view of the batch and its outputs become tensors
without a copy (``torch.from_numpy``). Detection models are refused: ``torch.export`` cannot trace their
data-dependent box filtering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from framescope.errors import DeviceError, ModelError
from framescope.models._runner import StepResult

OPSET = 18
EXPORT_FORMAT = 1
"""Part of the cache key: raise it when what an export writes changes."""
INPUT_NAME = "input"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
INSTALL_HINT = "pip install 'framescope[onnx]' (onnxruntime, onnx, onnxscript)"

Binding = Literal["run", "io_binding"]


def import_onnxruntime() -> ModuleType:
    """``onnxruntime``, or a :class:`ModelError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            f"--backend onnxruntime needs onnxruntime, which is not installed; {INSTALL_HINT}, or use "
            "--backend torch."
        ) from None
    return onnxruntime


def _import_exporter() -> tuple[ModuleType, ModuleType]:
    try:
        import onnx
        import onnxscript
    except ImportError as exc:
        raise ModelError(
            f"exporting to ONNX needs {exc.name}, which is not installed; {INSTALL_HINT}, or use "
            "--backend torch."
        ) from None
    return onnx, onnxscript


def onnx_cache_dir() -> Path:
    """Where exported models are kept: ``$FRAMESCOPE_CACHE/onnx``, else ``$XDG_CACHE_HOME/framescope/onnx``,
    else ``~/.cache/framescope/onnx``."""
    base = os.environ.get("FRAMESCOPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "framescope"
    )
    return Path(base) / "onnx"


def weights_identity(weights: str, seed: int) -> str:
    """What identifies the weights an export holds: the seed of random weights, torchvision's weight enum
    for ``DEFAULT``, a file's resolved path with its size and modification time."""
    if weights.lower() == "none":
        return f"none:seed={seed}"
    if weights.lower() == "default":
        return "DEFAULT"
    path = Path(weights).expanduser().resolve()
    stat = path.stat()
    return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"


def dynamic_axes(task: str) -> tuple[int, ...]:
    """The input axes left dynamic in the export: the batch, and a segmentation model's height and width."""
    return (0, 2, 3) if task == "segmentation" else (0,)


@dataclass(frozen=True)
class ExportKey:
    """Everything an exported file depends on."""

    model: str
    weights: str
    """:func:`weights_identity`."""
    input_shape: tuple[int | None, ...]
    """(channels, height, width) of one input image; None where the axis is dynamic."""
    opset: int = OPSET
    versions: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        text = json.dumps(
            {
                "format": EXPORT_FORMAT,
                "model": self.model,
                "weights": self.weights,
                "input": list(self.input_shape),
                "opset": self.opset,
                "versions": self.versions,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def file_name(self) -> str:
        return f"{self.model}-{self.digest()}.onnx"


@dataclass(frozen=True)
class OnnxFile:
    path: Path
    cache: Literal["hit", "exported", "replaced_damaged"]
    """Whether the file came from the cache, was exported now, or replaced a cached file that was damaged."""


def export_key(name: str, task: str, *, weights: str, seed: int, input_shape: Sequence[int]) -> ExportKey:
    onnx, onnxscript = _import_exporter()
    dynamic = dynamic_axes(task)
    shape = tuple(None if axis + 1 in dynamic else int(n) for axis, n in enumerate(input_shape))
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__}
    return ExportKey(name, weights_identity(weights, seed), shape, versions=versions)


def _output_names(model: nn.Module, task: str) -> list[str]:
    """Names of the graph's outputs: a segmentation model's output dict keys (``out``, ``aux`` when it has
    an auxiliary classifier, in torchvision's order), else ``output``."""
    if task != "segmentation":
        return ["output"]
    return ["out", "aux"] if getattr(model, "aux_classifier", None) is not None else ["out"]


def export_onnx(model: nn.Module, task: str, input_shape: Sequence[int], target: Path) -> None:
    """Export ``model`` (on the CPU, in eval mode) to ``target``, atomically: written under a temporary name
    in the same directory, then renamed."""
    from torch.export import Dim

    _import_exporter()
    dims = dict.fromkeys(dynamic_axes(task), Dim.DYNAMIC)
    # A batch of 2: torch.export specialises axes of size 1, which would fix the batch size.
    sample = torch.zeros((2, *input_shape), dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        try:
            program = torch.onnx.export(
                model.eval(),
                (sample,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=_output_names(model, task),
                dynamic_shapes=(dims,),
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
            raise ModelError(
                f"torch.onnx could not export this model ({type(exc).__name__}: {first}); "
                "use --backend torch."
            ) from None
        assert program is not None  # dynamo=True always returns the program
        program.save(temporary, external_data=False)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would keep a shared cache from other users
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _intact(path: Path) -> bool:
    onnx, _ = _import_exporter()
    try:
        onnx.checker.check_model(str(path))
    except Exception:  # a truncated or overwritten file: any parse or validation error
        return False
    return True


def cached_export(
    model: nn.Module,
    name: str,
    task: str,
    *,
    weights: str,
    seed: int,
    input_shape: Sequence[int],
    cache_dir: Path | None = None,
) -> OnnxFile:
    """The ONNX file of ``model`` for inputs of ``input_shape`` (C, H, W): from the cache when an intact file
    for the same key is there, else exported now."""
    refuse_detection(name, task)
    key = export_key(name, task, weights=weights, seed=seed, input_shape=input_shape)
    path = (cache_dir or onnx_cache_dir()) / key.file_name()
    cache: Literal["hit", "exported", "replaced_damaged"] = "exported"
    if path.exists():
        if _intact(path):
            return OnnxFile(path, "hit")
        cache = "replaced_damaged"
    try:
        export_onnx(model, task, input_shape, path)
    except OSError as exc:
        raise ModelError(
            f"could not write the ONNX export to {path.parent} ({exc.strerror or exc}); set FRAMESCOPE_CACHE "
            "to a writable directory."
        ) from None
    return OnnxFile(path, cache)


def refuse_detection(name: str, task: str) -> None:
    if task == "detection":
        raise ModelError(
            f"--backend onnxruntime cannot run {name}: torch.onnx cannot export torchvision's detection "
            "models (torch.export fails on their data-dependent box filtering); use --backend torch for "
            "detection, or pick a classification or segmentation model."
        )


# --- the session --------------------------------------------------------------------------------------------


def session_options(threads: int) -> Any:
    """Intra-op threads as framescope's thread plan gives torch; one inter-op thread (the graph runs its
    nodes in order, as torch does)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    return options


def providers_for(device: torch.device) -> list[Any]:
    """The execution providers to ask for: CUDA (on torch's current stream, so the session's work is ordered
    with the copies and kernels around it) for a CUDA device, else the CPU."""
    if device.type != "cuda":
        return [CPU_PROVIDER]
    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index).cuda_stream
    options = {"device_id": str(index), "has_user_compute_stream": "1", "user_compute_stream": str(stream)}
    return [(CUDA_PROVIDER, options), CPU_PROVIDER]


def _no_cuda_provider(available: Sequence[str]) -> DeviceError:
    return DeviceError(
        f"--infer-on-gpu with --backend onnxruntime needs ONNX Runtime's {CUDA_PROVIDER}, but this "
        f"onnxruntime offers {', '.join(available)} (the onnxruntime package is CPU-only: install "
        "onnxruntime-gpu in its place, matching your CUDA); drop --infer-on-gpu to run on the CPU."
    )


def open_session(path: Path, *, threads: int, device: torch.device) -> Any:
    """An ``InferenceSession`` for ``path`` on ``device``. A CUDA device without ONNX Runtime's CUDA provider
    is an error, never a silent fallback to the CPU (the same rule as torch's devices)."""
    ort = import_onnxruntime()
    if device.type == "cuda" and CUDA_PROVIDER not in ort.get_available_providers():
        raise _no_cuda_provider(ort.get_available_providers())
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=providers_for(device)
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"ONNX Runtime could not load {path} ({first}); delete it to export again, or use "
            "--backend torch."
        ) from None
    if device.type == "cuda" and session.get_providers()[0] != CUDA_PROVIDER:
        # onnxruntime-gpu falls back to the CPU when its CUDA libraries do not load
        raise _no_cuda_provider(session.get_providers())
    return session


def binding_for(provider: str, input_device: torch.device) -> Binding:
    """How a step hands the batch to the session: ``io_binding`` whenever the CUDA provider runs it (inputs
    and outputs stay in device memory), ``run`` with NumPy views on the CPU."""
    if provider == CUDA_PROVIDER:
        return "io_binding"
    if input_device.type != "cpu":
        raise DeviceError(
            f"the ONNX Runtime session runs on {provider}, but the batch is on {input_device}; drop "
            "--infer-on-gpu or install onnxruntime-gpu."
        )
    return "run"


def resolve_shape(
    declared: Sequence[int | str | None],
    input_declared: Sequence[int | str | None],
    input_shape: Sequence[int],
) -> tuple[int, ...] | None:
    """An output's concrete shape, from its declared shape whose symbolic axes (``"s77"``) name input axes:
    None when an axis is neither a number nor an input's symbol (the session must then allocate it)."""
    symbols = {
        symbol: size
        for symbol, size in zip(input_declared, input_shape, strict=True)
        if isinstance(symbol, str)
    }
    shape = []
    for axis in declared:
        if isinstance(axis, int):
            shape.append(axis)
        elif isinstance(axis, str) and axis in symbols:
            shape.append(symbols[axis])
        else:
            return None
    return tuple(shape)


class OnnxRunner:
    """The model stage of ``--backend onnxruntime``: an ``InferenceSession`` called like
    :class:`~framescope.models.InferenceRunner` (a batch in, a :class:`StepResult` out, as torch tensors
    that the post-processing takes as it takes the torch model's).

    ``model`` is the torch model that was exported, kept for what the run records about it (parameters) and
    for the post-processing's choice; it never runs. ``binding`` forces a binding (tests run the
    ``io_binding`` path on the CPU)."""

    def __init__(
        self,
        model: nn.Module,
        task: str,
        onnx_file: OnnxFile,
        device: torch.device,
        *,
        threads: int,
        binding: Binding | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.device = device
        self.amp = False
        self.onnx_file = onnx_file
        self.threads = threads
        self.session = open_session(onnx_file.path, threads=threads, device=device)
        self.provider: str = self.session.get_providers()[0]
        self.binding: Binding = binding or binding_for(self.provider, device)
        inputs = self.session.get_inputs()
        self.input_name: str = inputs[0].name
        self.input_declared: list[int | str | None] = list(inputs[0].shape)
        self.outputs: list[tuple[str, list[int | str | None]]] = [
            (o.name, list(o.shape)) for o in self.session.get_outputs()
        ]

    def info(self) -> dict[str, Any]:
        """What the run records about the backend (``summary.model.onnxruntime``)."""
        ort = import_onnxruntime()
        return {
            "version": ort.__version__,
            "provider": self.provider,
            "file": str(self.onnx_file.path),
            "cache": self.onnx_file.cache,
            "opset": OPSET,
            "exporter": f"torch.onnx (dynamo) from torch {torch.__version__}",
            "intra_op_threads": self.threads,
            "inter_op_threads": 1,
            "binding": self.binding,
        }

    def _outputs(self, tensors: list[torch.Tensor]) -> Any:
        if self.task == "segmentation":
            return {name: t for (name, _), t in zip(self.outputs, tensors, strict=True)}
        return tensors[0]

    def _run(self, batch: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.session.run(None, {self.input_name: batch.numpy()})
        return [torch.from_numpy(o) for o in outputs]

    def _run_bound(self, batch: torch.Tensor) -> list[torch.Tensor]:
        device_type = "cuda" if batch.is_cuda else "cpu"
        device_id = batch.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name,
            device_type,
            device_id,
            np.float32,
            tuple(batch.shape),
            batch.data_ptr(),
        )
        tensors: list[torch.Tensor | None] = []
        for name, declared in self.outputs:
            shape = resolve_shape(declared, self.input_declared, tuple(batch.shape))
            if shape is None:  # the session allocates it; read back below
                binding.bind_output(name, device_type, device_id)
                tensors.append(None)
                continue
            out = torch.empty(shape, dtype=torch.float32, device=batch.device)
            binding.bind_output(name, device_type, device_id, np.float32, shape, out.data_ptr())
            tensors.append(out)
        self.session.run_with_iobinding(binding)
        if any(t is None for t in tensors):
            allocated = binding.copy_outputs_to_cpu()
            tensors = [
                t if t is not None else torch.from_numpy(a).to(batch.device)
                for t, a in zip(tensors, allocated, strict=True)
            ]
        return [t for t in tensors if t is not None]

    def __call__(self, batch: Any) -> StepResult:
        if not isinstance(batch, torch.Tensor):
            raise ModelError("--backend onnxruntime takes one tensor per batch; use --backend torch.")
        batch = batch.float().contiguous()  # no-ops for the preprocessing's float32 output
        tensors = self._run_bound(batch) if self.binding == "io_binding" else self._run(batch)
        return StepResult(self._outputs(tensors))

    def warm_up(self, batch: Any) -> StepResult:
        """One untimed call: the session's first-run allocations."""
        return self(batch)
