"""framescope: where the time goes when a PyTorch model runs on video.

The public API is small::

    import framescope
    config = framescope.RunConfig.from_flat(model_name="resnet50", input_path="video.mp4", batch_size=8)
    result = framescope.run(config)   # a RunResult: .summary (dict), .rows (pandas DataFrame), .run_dir
    again = framescope.load_run(result.run_dir)

Names are imported on first use, so ``framescope --help`` and argument errors answer without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framescope._version import __version__

if TYPE_CHECKING:
    from framescope._observer import RunObserver, StartInfo
    from framescope._run import run
    from framescope.config import ModelConfig, PreprocessConfig, ProfileConfig, RunConfig, SourceConfig
    from framescope.errors import FramescopeError
    from framescope.records import RunResult, load_run

_EXPORTS = {
    "run": "framescope._run",
    "RunObserver": "framescope._observer",
    "StartInfo": "framescope._observer",
    "RunConfig": "framescope.config",
    "ModelConfig": "framescope.config",
    "PreprocessConfig": "framescope.config",
    "ProfileConfig": "framescope.config",
    "SourceConfig": "framescope.config",
    "FramescopeError": "framescope.errors",
    "RunResult": "framescope.records",
    "load_run": "framescope.records",
}

__all__ = [
    "FramescopeError",
    "ModelConfig",
    "PreprocessConfig",
    "ProfileConfig",
    "RunConfig",
    "RunObserver",
    "RunResult",
    "SourceConfig",
    "StartInfo",
    "__version__",
    "load_run",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'framescope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
