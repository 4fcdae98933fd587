"""A launch file: many workers, each a run configuration, with shared defaults and placement.

```yaml
defaults:                       # any keys of a run's config.yaml, shared by every worker
  source: {input_path: clip.mp4}
  batch_size: 8
cores: auto                     # the default: split the cores into disjoint sets, one per worker (all: share)
placement: spread               # --backend ray: spread the workers over the nodes (the default) or pack
workers:
  - name: small
    model: {name: mobilenet_v3_small}
  - name: big
    replicas: 2                 # big-1, big-2
    model: {name: resnet18}
    core_bind: "1"              # explicit cores win over `cores: auto`
    gpu: 0                      # CUDA_VISIBLE_DEVICES for this worker (auto: round-robin)
```

A worker's keys are a run's ``config.yaml`` keys (so a worker can be copied from any run directory) plus
``name``, ``replicas``, ``cores`` and ``gpu``. Where its output goes is the launcher's business:
``output_dir``, ``run_name`` and ``progress`` are set for it.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framescope.config import RunConfig, parse_core_list
from framescope.errors import ConfigError, FramescopeError
from framescope.models import task_of

LAUNCH_KEYS = frozenset({"defaults", "workers", "cores", "gpu", "placement"})
PLACEMENTS = ("spread", "pack")
WORKER_KEYS = frozenset({"name", "replicas", "cores", "gpu"})
OWNED_KEYS = ("output_dir", "run_name", "progress")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Worker:
    """One worker process: its name, its run configuration (as a config.yaml dict), and where it runs."""

    name: str
    config: dict[str, Any]
    cores: tuple[int, ...] | None = None
    """The cores it is bound to (None: all)."""
    gpu: int | None = None
    """The GPU it sees (CUDA_VISIBLE_DEVICES), or None to leave the environment alone."""

    def run_config(self, output_dir: Path) -> RunConfig:
        """Its RunConfig, writing ``output_dir/NAME``."""
        data = copy.deepcopy(self.config)
        data.update(output_dir=str(output_dir), run_name=self.name, progress="none")
        if self.cores is not None:
            data["core_bind"] = ",".join(map(str, self.cores))
        return RunConfig.from_dict(data)


@dataclass
class LaunchSpec:
    workers: list[Worker]
    notes: list[str] = field(default_factory=list)
    """What the placement could not do as asked (overlapping cores, more workers than cores)."""
    placement: str = "spread"
    """With ``--backend ray``: spread the workers over the nodes (the default) or pack them onto few."""

    def as_dict(self) -> dict[str, Any]:
        """The resolved launch, as ``launch.yaml`` records it: every worker's whole config and placement."""
        return {
            "workers": [
                {
                    "name": w.name,
                    "cores": list(w.cores) if w.cores is not None else "all",
                    "gpu": w.gpu,
                    "config": w.config,
                }
                for w in self.workers
            ],
            "notes": self.notes,
            "placement": self.placement,
        }


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, section by section (a worker's ``model: {name: x}`` keeps the defaults'
    other model keys)."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _where(path: Path, what: str) -> str:
    return f"{path}: {what}"


def load_launch(
    path: str | os.PathLike[str], available: list[int] | None = None, gpus: int = 0
) -> LaunchSpec:
    """Read, validate and place a launch file; every problem is a :class:`ConfigError` naming the worker, the
    key and the fix (before any worker starts)."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"launch file {str(file)!r} does not exist; pass a YAML file with `workers:`."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{str(file)!r} is a directory; pass a launch YAML file.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(_where(file, f"not valid YAML ({str(exc).splitlines()[0]})")) from None
    return parse_launch(data, file, available=available, gpus=gpus)


def parse_launch(data: Any, file: Path, *, available: list[int] | None = None, gpus: int = 0) -> LaunchSpec:
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list) or not data["workers"]:
        raise ConfigError(_where(file, "needs a non-empty `workers:` list (see framescope launch --help)"))
    unknown = sorted(set(data) - LAUNCH_KEYS)
    if unknown:
        raise ConfigError(
            _where(
                file,
                f"unknown key(s) {', '.join(unknown)}; the top level takes {', '.join(sorted(LAUNCH_KEYS))}",
            )
        )
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(_where(file, "`defaults:` should be a mapping of run config keys"))
    workers: list[Worker] = []
    placements: list[tuple[str, Any, Any]] = []
    for index, entry in enumerate(data["workers"], 1):
        if not isinstance(entry, dict):
            raise ConfigError(_where(file, f"worker {index} should be a mapping with a `name:`"))
        name = entry.get("name", f"worker-{index}")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(
                _where(file, f"worker {index}'s name {name!r} should be letters, digits, '-', '_' or '.'")
            )
        replicas = entry.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ConfigError(
                _where(file, f"worker {name!r}: replicas {replicas!r} should be a whole number >= 1")
            )
        run_keys = {k: v for k, v in entry.items() if k not in WORKER_KEYS}
        owned = [k for k in OWNED_KEYS if k in run_keys]
        if owned:
            raise ConfigError(
                _where(
                    file,
                    f"worker {name!r} sets {', '.join(owned)}: the launcher sets where workers write; "
                    "remove it (use --output-dir)",
                )
            )
        config = _merge(defaults, run_keys)
        for key in OWNED_KEYS:
            config.pop(key, None)
        try:
            checked = RunConfig.from_dict({**config, "output_dir": ".", "progress": "none"})
            task_of(checked.model.name)  # an unknown model is said now, not after the others started
        except FramescopeError as exc:
            raise ConfigError(_where(file, f"worker {name!r}: {exc}")) from None
        for replica in range(replicas):
            label = name if replicas == 1 else f"{name}-{replica + 1}"
            workers.append(Worker(label, copy.deepcopy(config)))
            placements.append(
                (label, entry.get("cores", data.get("cores")), entry.get("gpu", data.get("gpu")))
            )
    names = [w.name for w in workers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            _where(file, f"worker name(s) {', '.join(duplicates)} used twice; give each a name")
        )
    placement = data.get("placement", "spread")
    if placement not in PLACEMENTS:
        raise ConfigError(
            _where(file, f"placement {placement!r} should be {' or '.join(PLACEMENTS)} (for --backend ray)")
        )
    spec = LaunchSpec(workers, placement=placement)
    available = available or sorted(os.sched_getaffinity(0))
    _place_cores(spec, [p[1] or "auto" for p in placements], file, available)
    _place_gpus(spec, [p[2] for p in placements], file, gpus)
    return spec


def _place_cores(spec: LaunchSpec, asked: list[Any], file: Path, available: list[int]) -> None:
    """Explicit ``core_bind`` (or ``cores: "0-1"``) first; ``cores: auto`` splits the cores left over into
    disjoint, equal sets. Overlaps, and more workers than cores, are recorded in ``spec.notes``."""
    explicit: dict[str, tuple[int, ...]] = {}
    automatic: list[Worker] = []
    for worker, cores in zip(spec.workers, asked, strict=True):
        bind = worker.config.get("core_bind")  # "all" (a run's default, as config.yaml copies say) is unset
        if cores not in (None, "auto", "all") and bind not in (None, "all"):
            raise ConfigError(_where(file, f"worker {worker.name!r} sets both cores and core_bind; keep one"))
        if cores not in (None, "auto", "all"):
            bind = cores if isinstance(cores, str) else str(cores)
        if bind not in (None, "all"):
            try:
                parsed = parse_core_list(str(bind))
            except ConfigError as exc:
                raise ConfigError(_where(file, f"worker {worker.name!r}: {exc}")) from None
            missing = sorted(set(parsed or ()) - set(available))
            if missing:
                raise ConfigError(
                    _where(
                        file,
                        f"worker {worker.name!r} is bound to core(s) {missing} this process may not use "
                        f"(it may use {','.join(map(str, available))})",
                    )
                )
            explicit[worker.name] = tuple(parsed or available)
        elif cores == "auto":
            automatic.append(worker)
        elif cores == "all":
            explicit[worker.name] = tuple(available)
        worker.config.pop("core_bind", None)
    for worker in spec.workers:
        if worker.name in explicit:
            worker.cores = explicit[worker.name]
    taken = sorted({c for cores in explicit.values() for c in cores})
    free = [c for c in available if c not in taken] or list(available)
    if automatic:
        if len(automatic) > len(free):
            spec.notes.append(
                f"{len(automatic)} workers with cores: auto share {len(free)} core(s): some share a core"
            )
        size = max(1, len(free) // len(automatic))
        for index, worker in enumerate(automatic):
            start = (index * size) % len(free)
            worker.cores = tuple(free[start : start + size]) or (free[index % len(free)],)
    seen: dict[int, str] = {}
    for worker in spec.workers:
        for core in worker.cores or available:
            if core in seen and seen[core] != worker.name:
                spec.notes.append(f"workers {seen[core]} and {worker.name} share core {core}")
            seen.setdefault(core, worker.name)


def _place_gpus(spec: LaunchSpec, asked: list[Any], file: Path, gpus: int) -> None:
    for index, (worker, gpu) in enumerate(zip(spec.workers, asked, strict=True)):
        if gpu in (None, "none"):
            continue
        if gpu == "auto":
            worker.gpu = index % gpus if gpus else None
            continue
        if not isinstance(gpu, int) or isinstance(gpu, bool) or gpu < 0:
            raise ConfigError(
                _where(file, f"worker {worker.name!r}: gpu {gpu!r} should be auto, none or a GPU index")
            )
        if gpu >= gpus:
            raise ConfigError(
                _where(
                    file,
                    f"worker {worker.name!r} asks for GPU {gpu}, but {gpus} GPU(s) are visible; use "
                    "gpu: auto or an index below that",
                )
            )
        worker.gpu = gpu
