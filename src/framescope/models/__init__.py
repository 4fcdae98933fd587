"""Models: loading torchvision models by name and running inference or retrain steps."""

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

__all__ = [
    "InferenceRunner",
    "RetrainRunner",
    "Runner",
    "StepResult",
    "amp_dtype",
    "build_model",
    "detection_num_classes",
    "input_spec",
    "load_weights_file",
    "make_runner",
    "models_by_task",
    "task_of",
]
