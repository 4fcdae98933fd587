"""``framescope extract-frames``: the seed's frame_extractor.py, with its flags."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import TextColumn

from framescope.cli._console import tool_progress
from framescope.cli._flags import add_setting_arguments, config_from_flags
from framescope.config import ExtractConfig


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_arguments(parser, ExtractConfig)


def extract_command(args: argparse.Namespace) -> int:
    from framescope.tools.extract import extract_frames

    config = config_from_flags(ExtractConfig, args)
    console = Console(highlight=False)
    with tool_progress(console, "extracting", TextColumn("{task.fields[position]}")) as progress:
        task = progress.add_task("extract", total=None, position="")

        def on_progress(pts_s: float, duration_s: float | None) -> None:
            end = config.end_s if config.end_s is not None else duration_s
            if end:
                progress.update(task, total=end - config.start_s, completed=pts_s - config.start_s)
            progress.update(task, position=f"{pts_s:.1f} s")

        result = extract_frames(config, on_progress=on_progress)
    if result.files:
        span = f"{result.pts_s[0]:.3f} s to {result.pts_s[-1]:.3f} s"
        console.print(
            f"wrote {len(result.files)} frames ({span} of video) to {result.output_dir}", markup=False
        )
    else:
        console.print(
            f"wrote no frames: the video has none between {config.start_s:g} s and the end", markup=False
        )
    if result.packets_skipped:
        console.print(f"warning: {result.packets_skipped} undecodable packet(s) were skipped", markup=False)
    return 0
