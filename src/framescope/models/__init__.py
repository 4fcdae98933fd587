"""Models: loading torchvision models by name and running inference or retrain steps."""

from framescope.models._amp import amp_dtype
from framescope.models._detection import RawDetections, detection_family, forward_raw
from framescope.models._move import move, on_device, to_host
from framescope.models._onnx import OnnxRunner, onnx_cache_dir
from framescope.models._registry import build_model, input_spec, load_weights_file, models_by_task, task_of
from framescope.models._runner import (
    InferenceRunner,
    RetrainRunner,
    Runner,
    StepResult,
    detection_num_classes,
    make_runner,
)
from framescope.models._split import SplitModel, parse_split_point, split_points

__all__ = [
    "InferenceRunner",
    "OnnxRunner",
    "RawDetections",
    "RetrainRunner",
    "Runner",
    "SplitModel",
    "StepResult",
    "amp_dtype",
    "build_model",
    "detection_family",
    "detection_num_classes",
    "forward_raw",
    "input_spec",
    "load_weights_file",
    "make_runner",
    "models_by_task",
    "move",
    "on_device",
    "onnx_cache_dir",
    "parse_split_point",
    "split_points",
    "task_of",
    "to_host",
]
