"""Models: loading torchvision models by name and running inference or retrain steps."""

from framescope.models._move import move
from framescope.models._registry import build_model, input_spec, load_weights_file, models_by_task, task_of
from framescope.models._runner import (
    InferenceRunner,
    RetrainRunner,
    Runner,
    StepResult,
    amp_dtype,
    detection_num_classes,
    make_runner,
)
from framescope.models._split import SplitModel, parse_split_point, split_points

__all__ = [
    "InferenceRunner",
    "RetrainRunner",
    "Runner",
    "SplitModel",
    "StepResult",
    "amp_dtype",
    "build_model",
    "detection_num_classes",
    "input_spec",
    "load_weights_file",
    "make_runner",
    "models_by_task",
    "move",
    "parse_split_point",
    "split_points",
    "task_of",
]
