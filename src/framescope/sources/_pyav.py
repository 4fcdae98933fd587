"""PyAV (FFmpeg) reader for files, network streams and V4L2 cameras.

Packets are demuxed and decoded one at a time so a corrupt packet in the middle of a file is skipped and
counted instead of ending the run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from framescope.errors import SourceError
from framescope.sources._base import DECODE, DEFAULT_OPTIONS, Frame, ReadOptions, Source, SourceInfo
from framescope.sources._diagnose import stream_sent_no_frame
from framescope.sources._files import check_video_file, no_first_frame, not_a_video, stream_lost
from framescope.sources._spec import SourceSpec

MAX_CONSECUTIVE_BAD_PACKETS = 50
NVDEC_DOWNLOAD_FORMATS = frozenset(
    {"nv12", "nv16", "nv24", "p010le", "p016le", "p210le", "p216le", "p410le", "p416le"}
)
"""Formats NVDEC frames arrive in once copied to host memory (semi-planar); software decoders of H.264,
HEVC, VP9 and AV1 produce planar formats (yuv420p, yuv444p, ...)."""


def decoded_on_gpu(codec_format: str | None, frame_format: str) -> bool:
    """Whether a frame was decoded by NVDEC. ``codec_context.is_hwaccel`` only says a CUDA device was
    attached, and stays true when FFmpeg falls back to software decoding at run time (no ``libnvcuvid``, a
    profile or bit depth NVDEC cannot decode, such as H.264 4:4:4). The formats tell: with NVDEC the codec
    context's format is the hardware one (``cuda``) and frames arrive in NVDEC's download format; after a
    fallback both are the software decoder's own."""
    return codec_format == "cuda" or frame_format in NVDEC_DOWNLOAD_FORMATS


def _opens_without_hwaccel(target: str, options: dict[str, str], kwargs: dict[str, Any]) -> bool:
    """Whether the input opens once the CUDA device is left out: then the device was the problem."""
    import av

    plain = {key: value for key, value in kwargs.items() if key != "hwaccel"}
    try:
        av.open(target, options=options, **plain).close()
    except (av.FFmpegError, OSError):
        return False
    return True


class PyAVSource(Source):
    """Decodes with PyAV; frames are converted to RGB by FFmpeg's swscale (part of the read stage)."""

    def __init__(
        self, spec: SourceSpec, options: ReadOptions = DEFAULT_OPTIONS, *, on_gpu: bool = False
    ) -> None:
        super().__init__(options.clock, options.span)
        self.spec = spec
        self.threads = options.threads
        self.on_gpu = on_gpu
        """Decode with NVDEC through FFmpeg's CUDA hwaccel (frames are then copied to host memory)."""
        self.open_timeout_s = options.open_timeout_s
        self.read_timeout_s = options.read_timeout_s
        self._container: Any = None
        self._stream: Any = None
        self._packets: Iterator[Any] | None = None
        self._decoded: deque[Any] = deque()
        self._video_duration_s: float | None = None
        self.info = SourceInfo(kind=spec.kind, uri=spec.target, decoder="pyav", live=spec.live)

    def open(self) -> None:
        import av

        spec = self.spec
        options: dict[str, str] = {}
        target = spec.target
        kwargs: dict[str, Any] = {"timeout": (self.open_timeout_s, self.read_timeout_s)}
        if spec.kind == "file":
            check_video_file(target)
        elif spec.kind == "camera":
            target = f"/dev/video{spec.target}"
            kwargs["format"] = "v4l2"
        elif target.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"
        if self.on_gpu:
            kwargs["hwaccel"] = av.codec.hwaccel.HWAccel(device_type="cuda", allow_software_fallback=True)
        try:
            self._container = av.open(target, options=options, **kwargs)
        except av.error.ExitError:
            raise SourceError(
                f"{spec.kind} {spec.target} could not be opened within {self.open_timeout_s:g} s; check the "
                "address and that the server is up, or raise --open-timeout."
            ) from None
        except av.FFmpegError as exc:
            reason = str(getattr(exc, "strerror", None) or exc)
            if self.on_gpu and _opens_without_hwaccel(target, options, kwargs):
                raise SourceError(
                    f"--decode-on-gpu: FFmpeg could not create a CUDA device for NVDEC ({reason}); "
                    "check that the NVIDIA driver works (nvidia-smi) and the GPU is visible "
                    "(CUDA_VISIBLE_DEVICES), or drop --decode-on-gpu."
                ) from None
            if spec.kind == "camera":
                raise SourceError(
                    f"camera {spec.target} could not be opened ({reason}); check the camera is "
                    "connected and not in use, or pass a video file."
                ) from None
            if spec.kind == "stream":
                raise SourceError(
                    f"stream {spec.target} could not be opened ({reason}); check the URL and that the "
                    "server is up."
                ) from None
            raise not_a_video(spec.target, reason) from None
        if not self._container.streams.video:
            self.close()
            raise not_a_video(spec.target, "it has no video stream")
        stream = self._container.streams.video[0]
        if self.threads != 1:
            stream.thread_type = "AUTO"
            if self.threads > 1:
                stream.thread_count = self.threads
        self._stream = stream
        self._packets = self._container.demux(stream)
        first = self._next_decoded()
        if first is None:
            self.close()
            if spec.kind == "stream":
                # PyAV keeps FFmpeg's log off: open again with it on, for FFmpeg's reason.
                raise stream_sent_no_frame(
                    spec, open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s
                )
            if spec.live:
                raise no_first_frame(spec.kind, spec.target, self.read_timeout_s)
            raise not_a_video(spec.target, "no decodable video frame")
        self._decoded.appendleft(first)
        rate = stream.average_rate or stream.guessed_rate
        self.info.width, self.info.height = int(first.width), int(first.height)
        self.info.fps = float(rate) if rate else None
        self.info.frame_count = int(stream.frames) if stream.frames and spec.kind == "file" else None
        self.info.codec = stream.codec_context.name
        if self.on_gpu and not decoded_on_gpu(stream.codec_context.pix_fmt, first.format.name):
            self.warnings.append(
                f"--decode-on-gpu: FFmpeg fell back to CPU decoding for {self.info.codec} (NVDEC unavailable "
                "or unsupported for this stream); read and decode times are CPU times."
            )
        if self._container.duration and spec.kind != "camera":
            self.info.duration_s = self._container.duration / 1_000_000
        if stream.duration and stream.time_base and spec.kind != "camera":
            self._video_duration_s = float(stream.duration * stream.time_base)

    def _announced_duration_s(self) -> float | None:
        """The video stream's own duration where the container states one: the container's duration covers
        every stream, and an audio track may run longer than the video."""
        return self._video_duration_s or self.info.duration_s

    def _next_decoded(self) -> Any:
        """The next decoded frame, skipping packets FFmpeg cannot decode; None at the end of the input."""
        import av

        bad_in_a_row = 0
        while not self._decoded:
            if self._packets is None:
                return None
            try:
                packet = next(self._packets)
            except StopIteration:
                self._packets = None
                if self.spec.endless and self.frames_read:
                    raise stream_lost(
                        self.spec.kind, self.spec.target, self.frames_read, self.read_timeout_s
                    ) from None
                self._end()
                return None
            except av.error.ExitError:
                raise stream_lost(
                    self.spec.kind, self.spec.target, self.frames_read, self.read_timeout_s
                ) from None
            except av.FFmpegError:
                # A demuxing error mid-file: treat what was read as the whole input.
                self.frames_skipped += 1
                self._packets = None
                self._end()
                return None
            try:
                with self.span(DECODE):
                    self._decoded.extend(packet.decode())
                bad_in_a_row = 0
            except av.FFmpegError:
                self.frames_skipped += 1
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_CONSECUTIVE_BAD_PACKETS:
                    self._packets = None
                    self._end()
                    return None
        return self._decoded.popleft()

    def read(self) -> Frame | None:
        frame = self.read_raw()
        if frame is None:
            return None
        with self.span(DECODE):
            # swscale converts to RGB and, for --decode-size, resizes in the same pass. Resizing, it writes
            # planar RGB (gbrp; PyAV hands it back as height x width x RGB) faster than packed rgb24: 0.89
            # against 1.21 ms a 1080p frame to 455x256 (the auto size of a 224 crop), where rgb24 has no
            # vector path for an odd width; the pixels are rgb24's, or as close to a torchvision resize where
            # an even width takes rgb24's vector path. Full size, rgb24 is ten times faster.
            if self.output_size is None:
                image = frame.to_ndarray(format="rgb24")
            else:
                width, height = self.output_size
                image = frame.to_ndarray(format="gbrp", width=width, height=height, interpolation="AREA")
        return self._frame(image, frame.time)

    def read_raw(self) -> Any:
        """The next decoded ``av.VideoFrame`` (not converted to RGB), or None at the end: for callers that
        keep few frames and convert only those."""
        return self._next_decoded()

    def seek(self, seconds: float) -> bool:
        """Jump to the keyframe at or before ``seconds``; frames before ``seconds`` still follow it.
        Returns False where the input cannot seek (live streams), which then reads from where it is."""
        import av

        if self._container is None or seconds <= 0:
            return False
        stream = self._stream
        try:
            self._container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, OSError, ValueError):
            return False
        self._decoded.clear()
        stream.codec_context.flush_buffers()
        self._packets = self._container.demux(stream)
        return True

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._packets = None
            self._decoded.clear()
