"""framescope: where the time goes when a PyTorch model runs on video.

The public API is small::

    import framescope
    config = framescope.RunConfig.from_flat(model_name="resnet50", input_path="video.mp4", batch_size=8)
    result = framescope.run(config)   # a RunResult: .summary (dict), .rows (pandas DataFrame), .run_dir
    again = framescope.load_run(result.run_dir)
"""

from framescope._run import RunObserver, StartInfo, run
from framescope._version import __version__
from framescope.config import ModelConfig, PreprocessConfig, ProfileConfig, RunConfig, SourceConfig
from framescope.errors import FramescopeError
from framescope.records import RunResult, load_run

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
