"""Telling an input that was read to its end from one that ended early.

OpenCV reports an undecodable packet exactly like the end of the file, so a video damaged in the middle ends a
run early looking complete. Once a source's input ended, :func:`input_shortfall` compares what it delivered
with what the container announced.

Tolerance: the input is short when the frames it delivered plus those it skipped fall short of the announced
count by 10 % or more (and at least 3 frames), *and*, where frames carry timestamps, the presentation time
they cover falls short of the announced duration by as much (10 %, at least 3 frame intervals). Intact clips
read exactly their announced count with OpenCV, PyAV and torchcodec (MP4, MKV, MPEG-TS, odd sizes, 1 to 300
frames), and durations agree within a millisecond; the margin leaves room for what legitimately differs in
real files: edit lists that drop a few leading frames, a last frame's duration, rounded container durations.
Where the container states no frame count (MKV, MPEG-TS), the count is duration x frame rate, which for
variable frame rate is no count at all (a 12-frame VFR clip announces 61 frames in MKV and 4001 in MPEG-TS);
the time test keeps those quiet, since their frames still cover the whole duration.
"""

from __future__ import annotations

from framescope.sources._base import InputTally, Source

SHORTFALL_TOLERANCE = 0.10
"""How far short of the announced frames and duration an input must end to count as ended early."""
SHORTFALL_MIN_FRAMES = 3
"""... and by at least this many frames (and frame intervals), so short clips do not warn over one frame."""


def input_shortfall(source: Source | InputTally) -> dict[str, int] | None:
    """``{"frames_read", "frames_expected", "frames_skipped"}`` when ``source`` (once its ``read()`` returned
    None) reached the end of a finite input clearly short of what the container announced; None when it read
    what was announced, when reading stopped before the end (``--max-steps``, an error, a live input), or when
    nothing was announced."""
    tally = source if isinstance(source, InputTally) else source.tally()
    expected = tally.frames_expected
    if not tally.reached_end or not expected:
        return None
    missing = expected - (tally.frames_read + tally.frames_skipped)
    if missing < max(SHORTFALL_MIN_FRAMES, SHORTFALL_TOLERANCE * expected):
        return None
    if tally.seconds_expected and tally.seconds_read is not None:
        frame_interval = tally.seconds_expected / expected
        missing_s = tally.seconds_expected - tally.seconds_read
        if missing_s < max(
            SHORTFALL_MIN_FRAMES * frame_interval, SHORTFALL_TOLERANCE * tally.seconds_expected
        ):
            return None
    return {
        "frames_read": tally.frames_read,
        "frames_expected": expected,
        "frames_skipped": tally.frames_skipped,
    }
