"""``framescope doctor``: what this machine can and cannot do, checked before a long run finds out.

Each check tries the real thing where it is cheap (``torchvision.ops.nms`` runs, a generated clip is decoded
by each decoder, NVDEC decodes a frame without falling back to software, ``nsys --version`` answers) and
gives a verdict and, where something is wrong or missing, the fix:

* ``ok``: works;
* ``missing``: an optional feature that is not installed or not available here (the default run does not
  need it);
* ``warn``: works, with a caveat worth knowing (another process loading the cores right now);
* ``fail``: broken; when the check is one the default run needs (``needed``), the doctor exits 1.

Everything is measured in this process within a few seconds (no GPU: well under 10 s); nothing is written
outside a temporary directory.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

VERDICTS = ("ok", "missing", "warn", "fail")
MIN_PYTHON = (3, 11)
LOAD_SAMPLE_S = 1.0
BUSY_CORES = 0.5
"""Other processes using more than this many cores during the sample: a warning (timings will be noisy)."""
CODECS = ("h264", "hevc")


@dataclass
class Check:
    name: str
    verdict: str
    detail: str
    fix: str = ""
    needed: bool = False
    """Whether the default run (``make demo``: a CPU model on the built-in clip with OpenCV) needs it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def installed(module: str) -> str | None:
    """The installed version of ``module``'s distribution, or None when it cannot be imported (found
    without importing it: importing Ray alone takes seconds)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None (import blocked)
        return None
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


# --- the checks ------------------------------------------------------------------------------------------


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "ok", f"{version} ({sys.executable})", needed=True)
    return Check(
        "python",
        "fail",
        f"{version}: framescope needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer",
        f"install Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ and recreate the environment (make clean-env demo)",
        needed=True,
    )


def check_torch_pair() -> Check:
    fix = (
        "install torch and torchvision as one matching pair from the same index (make clean-env test lets "
        "pip resolve one)"
    )
    try:
        import torch
        import torchvision
        from torchvision.ops import nms
    except Exception as exc:
        return Check("torch + torchvision", "fail", f"import failed: {_first_line(exc)}", fix, needed=True)
    try:
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
        kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
    except Exception as exc:  # "operator torchvision::nms does not exist": a mismatched pair
        return Check(
            "torch + torchvision",
            "fail",
            f"torch {torch.__version__}, torchvision {torchvision.__version__}: nms failed "
            f"({_first_line(exc)})",
            fix,
            needed=True,
        )
    if kept != [0, 2]:
        return Check("torch + torchvision", "fail", f"nms kept {kept}, expected [0, 2]", fix, needed=True)
    return Check(
        "torch + torchvision",
        "ok",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}: torchvision.ops.nms runs",
        needed=True,
    )


def check_cuda() -> list[Check]:
    """CUDA visible, each GPU (name, memory, compute capability, driver) and cuDNN."""
    import torch

    from framescope.instrument.system import nvidia_driver

    if torch.version.cuda is None:
        return [
            Check(
                "CUDA",
                "missing",
                f"torch {torch.__version__} is a CPU-only build",
                "for a GPU, install a CUDA build of torch (and the matching torchvision)",
            )
        ]
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "no NVIDIA driver or GPU found"
        return [
            Check(
                "CUDA",
                "missing",
                f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU ({why})",
                "runs use the CPU; for a GPU check nvidia-smi and CUDA_VISIBLE_DEVICES",
            )
        ]
    driver = nvidia_driver() or "unknown"
    checks = [
        Check(
            "CUDA",
            "ok",
            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s), driver {driver}",
        )
    ]
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        checks.append(
            Check(
                f"GPU {index}",
                "ok",
                f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
                f"{props.major}.{props.minor}",
            )
        )
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    checks.append(
        Check("cuDNN", "ok", f"{cudnn}")
        if cudnn
        else Check("cuDNN", "missing", "not available to torch", "install a torch build with cuDNN")
    )
    return checks


ENCODERS = {"h264": "libx264", "hevc": "libx265"}


def _clip(tmp: Path, codec: str = "h264") -> Path:
    """A tiny generated clip in ``codec`` (an encoder PyAV's FFmpeg lacks raises)."""
    from framescope.sources import write_clip

    return write_clip(tmp / f"doctor-{codec}.mp4", width=128, height=96, frames=4, codec=ENCODERS[codec])


def check_pyav(tmp: Path) -> Check:
    """PyAV with libx264: the built-in sample clip and the test clips are made with it."""
    try:
        import av
    except Exception as exc:
        return Check("PyAV", "fail", f"import failed: {_first_line(exc)}", "pip install av", needed=True)
    try:
        clip = _clip(tmp)
    except Exception as exc:
        return Check(
            "PyAV",
            "fail",
            f"PyAV {av.__version__} could not encode H.264 with libx264 ({_first_line(exc)})",
            "install a PyAV wheel from PyPI (it ships libx264): pip install --force-reinstall av",
            needed=True,
        )
    return Check(
        "PyAV", "ok", f"{av.__version__}: encodes and decodes H.264 ({clip.stat().st_size} B)", needed=True
    )


def check_opencv(tmp: Path) -> Check:
    """OpenCV's video backend (the default decoder): FFmpeg in its build, and a generated clip decodes."""
    fix = "pip install --force-reinstall opencv-python-headless (its wheel bundles FFmpeg)"
    try:
        import cv2
    except Exception as exc:
        return Check("OpenCV video", "fail", f"import failed: {_first_line(exc)}", fix, needed=True)
    build = cv2.getBuildInformation()
    match = re.search(r"FFMPEG:\s+(\S+)", build)
    backend = f"FFmpeg {match.group(1)}" if match else "no FFmpeg in its build"
    capture = cv2.VideoCapture(str(tmp / "doctor-h264.mp4"))
    ok, frame = capture.read()
    capture.release()
    if not ok or frame is None:
        return Check(
            "OpenCV video",
            "fail",
            f"OpenCV {cv2.__version__} ({backend}) could not decode a generated H.264 clip",
            fix,
            needed=True,
        )
    return Check("OpenCV video", "ok", f"OpenCV {cv2.__version__}, {backend}: decodes H.264", needed=True)


def check_torchcodec() -> Check:
    """torchcodec and FFmpeg's shared libraries it links against (``--decoder torchcodec``)."""
    from framescope.sources._torchcodec import torchcodec_problem

    version = installed("torchcodec")
    if version is None:
        return Check(
            "torchcodec", "missing", "not installed", "pip install torchcodec, or use --decoder pyav"
        )
    problem = torchcodec_problem()
    if problem is not None:
        return Check("torchcodec", "missing", problem.split(";")[0], problem.split("; ", 1)[-1])
    return Check("torchcodec", "ok", f"{version}: FFmpeg's libraries load, a frame decodes")


def check_nvdec(tmp: Path, codec: str) -> list[Check]:
    """NVDEC for ``codec``: one generated frame through torchcodec on CUDA and through PyAV's CUDA hwaccel,
    a software fallback counted as not working."""
    import torch

    name = f"NVDEC {codec}"
    if not torch.cuda.is_available():
        return [Check(name, "missing", "no CUDA GPU visible", "needs an NVIDIA GPU")]
    try:
        clip = _clip(tmp, codec)
    except Exception as exc:
        return [Check(name, "missing", f"no {codec} encoder here to make a test clip ({_first_line(exc)})")]
    from framescope.sources import PyAVSource, SourceSpec, TorchCodecSource

    checks = []
    for label, make in (
        ("torchcodec", lambda: TorchCodecSource(SourceSpec("file", str(clip)), on_gpu=True)),
        ("PyAV hwaccel", lambda: PyAVSource(SourceSpec("file", str(clip)), on_gpu=True)),
    ):
        try:
            source = make()
            source.open()
            frame = source.read()
            source.close()
        except Exception as exc:  # SourceError, or whatever a broken driver raises
            checks.append(Check(f"{name} ({label})", "missing", _first_line(exc), "use CPU decoding"))
            continue
        fallback = [w for w in source.warnings if "fell back" in w or "software" in w]
        if frame is None or fallback:
            checks.append(
                Check(
                    f"{name} ({label})",
                    "missing",
                    fallback[0] if fallback else "no frame decoded",
                    "decode on the CPU (drop --decode-on-gpu) or re-encode to a codec this GPU decodes",
                )
            )
        else:
            checks.append(Check(f"{name} ({label})", "ok", "decodes on the GPU, no software fallback"))
    return checks


def nsys_version(executable: str) -> str | None:
    try:
        done = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+\.\d+(?:\.\d+)*)", done.stdout + done.stderr)
    return match.group(1) if done.returncode == 0 and match else None


def check_nsys() -> Check:
    """Nsight Systems on PATH, its version, and (with a GPU) the driver it will meet."""
    executable = shutil.which("nsys")
    if executable is None:
        return Check(
            "nsys",
            "missing",
            "not on PATH",
            "install NVIDIA Nsight Systems for --nsys timelines (NVTX ranges are emitted either way)",
        )
    version = nsys_version(executable)
    if version is None:
        return Check("nsys", "fail", f"{executable} did not answer --version", "reinstall Nsight Systems")
    from framescope.instrument.system import nvidia_driver

    driver = nvidia_driver()
    tail = f"; NVIDIA driver {driver}" if driver else "; no NVIDIA driver (CPU timelines only)"
    return Check("nsys", "ok", f"{version} at {executable}{tail}")


def check_nvtx() -> Check:
    try:
        import torch

        torch.cuda.nvtx.range_push("framescope-doctor")
        torch.cuda.nvtx.range_pop()
    except Exception as exc:
        return Check(
            "NVTX",
            "missing",
            f"torch.cuda.nvtx unusable ({_first_line(exc)})",
            "stages are still timed; Nsight timelines will lack framescope's ranges",
        )
    return Check("NVTX", "ok", "torch.cuda.nvtx ranges can be pushed (Nsight Systems shows them)")


def check_optional(module: str, label: str, feature: str, extra: str) -> Check:
    version = installed(module)
    if version is None:
        return Check(label, "missing", "not installed", f"pip install 'framescope[{extra}]' for {feature}")
    detail = f"{version}"
    if module == "onnxruntime":
        try:
            import onnxruntime

            detail += f"; providers {', '.join(onnxruntime.get_available_providers())}"
        except Exception as exc:
            return Check(label, "fail", f"{version} cannot be imported ({_first_line(exc)})", "reinstall it")
    return Check(label, "ok", f"{detail} ({feature})")


def _cgroup_cpu_limit() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def check_resources() -> list[Check]:
    """The cores this process may use (affinity, a cgroup CPU quota) and its memory (available, a cgroup
    limit)."""
    import psutil

    from framescope._memory import available_memory

    logical = os.cpu_count() or 1
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(logical))
    quota = _cgroup_cpu_limit()
    detail = f"{len(allowed)} of {logical} logical cores usable"
    if len(allowed) < logical:
        detail += f" (affinity {allowed[0]}-{allowed[-1]})" if allowed else ""
    if quota is not None:
        detail += f"; cgroup quota {quota:.2f} cores"
    cores = Check("cores", "ok", detail, needed=True)
    if quota is not None and quota < len(allowed):
        cores.verdict = "warn"
        cores.fix = (
            f"the quota allows {quota:.2f} cores of the {len(allowed)} bound: pass --core-bind with at most "
            f"{max(1, int(quota))} core(s) so threads are not throttled"
        )
    total = psutil.virtual_memory().total
    available = available_memory()
    memory = Check(
        "memory",
        "ok",
        f"{available / 2**30:.1f} GiB available of {total / 2**30:.1f} GiB (cgroup limit counted)",
        needed=True,
    )
    if available < 2 * 2**30:
        memory.verdict = "warn"
        memory.fix = "under 2 GiB available: use small batches, --decode-size, or free memory"
    return [cores, memory]


def check_load(seconds: float = LOAD_SAMPLE_S, sample: Callable[[float], float] | None = None) -> Check:
    """Whether other processes are loading the cores right now: a ``seconds`` sample of the CPU time every
    process but this one used."""
    busy = (sample or _others_busy_cores)(seconds)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    detail = f"other processes used {busy:.2f} of {usable} cores over {seconds:g} s"
    if busy > BUSY_CORES:
        return Check(
            "load now",
            "warn",
            detail,
            "timings will be noisy: wait for the other work to end, or compare runs with framescope compare "
            "--rerun (interleaved)",
        )
    return Check("load now", "ok", detail)


def _others_busy_cores(seconds: float) -> float:
    import psutil

    me = psutil.Process()

    def busy() -> float:
        times = psutil.cpu_times()
        own = me.cpu_times()
        work = times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)
        work += getattr(times, "softirq", 0.0) + getattr(times, "steal", 0.0)
        return work - (own.user + own.system)

    start, before = time.monotonic(), busy()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return max(0.0, (busy() - before) / elapsed) if elapsed > 0 else 0.0


# --- all of them -----------------------------------------------------------------------------------------


def run_checks(*, load_seconds: float = LOAD_SAMPLE_S) -> list[Check]:
    """Every check, in the order the table shows them. A check that raises is a ``fail`` naming the error
    (the doctor itself must not crash on a broken machine)."""
    checks: list[Check] = []

    def add(name: str, function: Callable[[], Check | list[Check]], *, needed: bool = False) -> None:
        try:
            found = function()
        except Exception as exc:
            found = Check(name, "fail", f"the check itself failed: {_first_line(exc)}", needed=needed)
        checks.extend(found if isinstance(found, list) else [found])

    add("python", check_python, needed=True)
    add("torch + torchvision", check_torch_pair, needed=True)
    with tempfile.TemporaryDirectory(prefix="framescope-doctor-") as scratch:
        tmp = Path(scratch)
        add("PyAV", lambda: check_pyav(tmp), needed=True)
        add("OpenCV video", lambda: check_opencv(tmp), needed=True)
        add("torchcodec", check_torchcodec)
        add("CUDA", check_cuda)
        for codec in CODECS:
            add(f"NVDEC {codec}", lambda codec=codec: check_nvdec(tmp, codec))  # type: ignore[misc]
    add("NVTX", check_nvtx)
    add("nsys", check_nsys)
    add("Ray", lambda: check_optional("ray", "Ray", "framescope launch --backend ray", "ray"))
    add(
        "ONNX Runtime",
        lambda: check_optional("onnxruntime", "ONNX Runtime", "--backend onnxruntime", "onnx"),
    )
    add("resources", check_resources, needed=True)
    add("load now", lambda: check_load(load_seconds))
    return checks


def healthy(checks: list[Check]) -> bool:
    """Whether everything the default run needs works (exit 0)."""
    return not any(c.needed and c.verdict == "fail" for c in checks)


def as_json(checks: list[Check], seconds: float) -> dict[str, Any]:
    return {
        "healthy": healthy(checks),
        "seconds": round(seconds, 2),
        "checks": [asdict(c) for c in checks],
    }
