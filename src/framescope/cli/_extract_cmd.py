"""``framescope extract-frames``: the seed's frame_extractor.py, with its flags."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import TextColumn

from framescope.cli._console import tool_progress
from framescope.config import IMAGE_FORMATS, ExtractConfig


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, metavar="VIDEO", help="video file or stream URL")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the images")
    parser.add_argument(
        "--fps",
        type=float,
        default=1.0,
        help="frames per second of video to keep; 0.5 keeps one frame every 2 s (default: 1.0)",
    )
    parser.add_argument("--prefix", default="frame_", help="file name prefix (default: frame_)")
    parser.add_argument("--format", choices=IMAGE_FORMATS, default="png", help="image format (default: png)")
    parser.add_argument(
        "--start", type=float, default=0.0, metavar="S", help="start at S seconds (default: 0)"
    )
    parser.add_argument(
        "--end", type=float, default=None, metavar="S", help="stop after S seconds (default: the end)"
    )
    parser.add_argument(
        "--quality", type=int, default=95, metavar="Q", help="JPEG quality 1-100 (default: 95)"
    )
    parser.add_argument(
        "--open-timeout", type=float, default=10.0, metavar="S", help="stream open time-out (default: 10)"
    )
    parser.add_argument(
        "--read-timeout", type=float, default=10.0, metavar="S", help="stream read time-out (default: 10)"
    )


def extract_command(args: argparse.Namespace) -> int:
    from framescope.tools.extract import extract_frames

    config = ExtractConfig(
        input=args.input,
        output=args.output,
        fps=args.fps,
        prefix=args.prefix,
        format=args.format,
        start_s=args.start,
        end_s=args.end,
        quality=args.quality,
        open_timeout_s=args.open_timeout,
        read_timeout_s=args.read_timeout,
    )
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
