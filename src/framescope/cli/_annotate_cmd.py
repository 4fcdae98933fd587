"""``framescope annotate``: the seed's image_annotator.py, with its flags."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import MofNCompleteColumn

from framescope.cli._console import tool_progress
from framescope.cli._flags import add_setting_arguments, config_from_flags
from framescope.config import AnnotateConfig


def add_annotate_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_arguments(parser, AnnotateConfig)


def annotate_command(args: argparse.Namespace) -> int:
    from framescope.tools.annotate import annotate

    config = config_from_flags(AnnotateConfig, args)
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
