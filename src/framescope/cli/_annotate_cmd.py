"""``framescope annotate``: the seed's image_annotator.py, with its flags."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import MofNCompleteColumn

from framescope.cli._console import tool_progress
from framescope.config import AnnotateConfig


def add_annotate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--input", required=True, metavar="DIR", help="directory of images (nested is fine)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="directory for annotated images and annotations.json",
    )
    parser.add_argument(
        "--model_name",
        "--model-name",
        dest="model_name",
        default="fasterrcnn_resnet50_fpn_v2",
        metavar="NAME",
        help="torchvision detection model (default: fasterrcnn_resnet50_fpn_v2)",
    )
    parser.add_argument("--threshold", type=float, default=0.7, help="minimum score kept (default: 0.7)")
    parser.add_argument(
        "--batch-size", type=int, default=4, metavar="N", help="images per forward pass (default: 4)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto, CUDA when available)"
    )
    parser.add_argument(
        "--weights",
        default="DEFAULT",
        help="DEFAULT (torchvision's trained weights, downloaded), a state-dict path, or none (random) "
        "(default: DEFAULT)",
    )


def annotate_command(args: argparse.Namespace) -> int:
    from framescope.tools.annotate import annotate

    config = AnnotateConfig(
        input=args.input,
        output=args.output,
        model_name=args.model_name,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=args.device,
        weights=args.weights,
    )
    console = Console(highlight=False)
    with tool_progress(console, "annotating", MofNCompleteColumn()) as progress:
        task = progress.add_task("annotate", total=None)
        result = annotate(
            config, on_progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    console.print(
        f"annotated {result.images} images with {result.boxes} boxes (score >= {config.threshold:g}) in "
        f"{result.seconds:.1f} s; wrote {result.output_dir} and {result.coco_path}",
        markup=False,
    )
    if result.skipped:
        listed = ", ".join(result.skipped)
        console.print(
            f"skipped {len(result.skipped)} file(s) that are not readable images: {listed}", markup=False
        )
    return 0
