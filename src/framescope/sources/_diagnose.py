"""Asking FFmpeg why a stream that opened sent no frame.

OpenCV silences FFmpeg's log and PyAV turns it off by default, so the reason FFmpeg gives (an MP4 whose index
sits at the end of a file served without Range support: "partial file", "Stream ends prematurely") is lost.
Once opening failed, the stream is opened once more with PyAV and FFmpeg's error messages captured.
"""

from __future__ import annotations

from dataclasses import dataclass

from framescope.errors import SourceError
from framescope.sources._files import no_first_frame
from framescope.sources._spec import SourceSpec

_MAX_REASON = 240
_MP4_DEMUXER = "mp4"
"""In the name of FFmpeg's MP4/QuickTime demuxer ("mov,mp4,m4a,3gp,3g2,mj2")."""
MP4_OVER_HTTP_FIX = (
    "an MP4 read over HTTP needs a server that answers Range requests unless its index (moov atom) comes "
    "first: serve it with range support, remux it with ffmpeg -i IN.mp4 -c copy -movflags +faststart "
    "OUT.mp4, or serve MPEG-TS instead"
)


@dataclass(frozen=True, slots=True)
class FFmpegReport:
    reason: str | None
    """FFmpeg's error messages, joined on one line; None when it gave none."""
    demuxer: str | None
    """The container format FFmpeg recognised, where it got that far."""
    decoded: bool
    """Whether a frame came this time (a transient failure)."""


def ask_ffmpeg(target: str, *, open_timeout_s: float, read_timeout_s: float) -> FFmpegReport:
    """Open ``target`` with PyAV and decode up to its first video frame, with FFmpeg's errors captured."""
    import av
    import av.logging

    error: str | None = None
    demuxer: str | None = None
    decoded = False
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            try:
                with av.open(target, timeout=(open_timeout_s, read_timeout_s)) as container:
                    demuxer = container.format.name
                    if container.streams.video:
                        for _frame in container.decode(container.streams.video[0]):
                            decoded = True
                            break
            except (av.FFmpegError, OSError) as exc:
                error = str(getattr(exc, "strerror", None) or exc)
    finally:
        av.logging.set_level(previous)
    messages = [message for level, _name, message in logs if level <= av.logging.ERROR]
    if error is not None:
        messages.append(error)
    lines: list[str] = []
    for message in messages:
        text = " ".join(message.split())
        if text and text not in lines:
            lines.append(text)
    reason = "; ".join(lines) or None
    if reason is not None and len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    return FFmpegReport(reason=reason, demuxer=demuxer, decoded=decoded)


def stream_sent_no_frame(spec: SourceSpec, *, open_timeout_s: float, read_timeout_s: float) -> SourceError:
    """The error for a stream that opened but sent no frame, with FFmpeg's reason where it gives one.

    Only for streams that carry a file (HTTP): a live protocol's silence has no reason to ask for, and asking
    would cost another open time-out.
    """
    if spec.kind != "stream" or spec.endless:
        return no_first_frame(spec.kind, spec.target, read_timeout_s)
    report = ask_ffmpeg(spec.target, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    if report.reason is None or report.decoded:
        return no_first_frame(spec.kind, spec.target, read_timeout_s)
    if report.demuxer is not None and _MP4_DEMUXER in report.demuxer.split(","):
        fix = MP4_OVER_HTTP_FIX
    else:
        fix = f"check the source, or raise --read-timeout (now {read_timeout_s:g} s)"
    return SourceError(
        f"{spec.kind} {spec.target} opened but sent no frame (FFmpeg: {report.reason}); {fix}."
    )
