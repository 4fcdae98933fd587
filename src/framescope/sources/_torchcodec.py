"""torchcodec: FFmpeg decoding straight into torch tensors, on the CPU or on the GPU with NVDEC.

With ``--decode-on-gpu`` frames are decoded by NVDEC into CUDA tensors and never visit host memory; a CUDA
decoder that falls back to the CPU (an unsupported codec, say) is detected and reported. ``--decode-size``
becomes a decoder-side resize, so full-size RGB frames are never produced.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import torch

from framescope.errors import SourceError
from framescope.sources._base import DECODE, DEFAULT_OPTIONS, Frame, ReadOptions, Source, SourceInfo
from framescope.sources._clips import write_clip
from framescope.sources._files import check_video_file, not_a_video
from framescope.sources._spec import SourceSpec

FFMPEG_LIBRARIES = (
    "FFmpeg's libraries (Debian: apt install libavcodec59 libavformat59 libavutil57 libswscale6 "
    "libavdevice59 libavfilter8)"
)
MAX_CONSECUTIVE_BAD_FRAMES = 50
"""A damaged stretch longer than this ends the input (the count of skipped frames says so)."""
INSTALL_HINT = f"install it with pip install torchcodec, and {FFMPEG_LIBRARIES}, or use --decoder pyav"


def import_torchcodec() -> Any:
    try:
        import torchcodec.decoders
        import torchcodec.transforms
    except ImportError:
        raise SourceError(f"--decoder torchcodec needs the torchcodec package; {INSTALL_HINT}.") from None
    except (OSError, RuntimeError) as exc:  # torchcodec could not load FFmpeg's shared libraries
        raise SourceError(
            f"torchcodec cannot load FFmpeg's libraries ({type(exc).__name__}); {INSTALL_HINT}."
        ) from None
    return torchcodec


def _first_sentence(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    first = first.split(". ", 1)[0].rstrip(".")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@functools.cache
def torchcodec_problem() -> str | None:
    """None when torchcodec can decode on this machine; otherwise one line saying why not and what to do.

    Importing torchcodec does not load its native library (libtorchcodec, linked against FFmpeg's shared
    libraries); opening a video does. So this opens a tiny generated clip and decodes one frame, once per
    process. A failure here, on a clip known to be good, is the machine's and not any input's.
    """
    try:
        torchcodec = import_torchcodec()
    except SourceError as exc:
        return str(exc)
    with tempfile.TemporaryDirectory(prefix="framescope-torchcodec-probe-") as tmp:
        clip = write_clip(Path(tmp) / "probe.mp4", width=64, height=48, frames=2)
        try:
            torchcodec.decoders.VideoDecoder(str(clip)).get_frame_at(0)
        except Exception as exc:  # RuntimeError "Could not load libtorchcodec", OSError from dlopen, ...
            return (
                f"torchcodec cannot load FFmpeg's shared libraries ({_first_sentence(exc)}); install "
                f"{FFMPEG_LIBRARIES}, or use --decoder pyav."
            )
    return None


class TorchCodecSource(Source):
    """Decodes a video file with ``torchcodec.decoders.VideoDecoder``; frames are 3 x H x W uint8 tensors."""

    def __init__(
        self, spec: SourceSpec, options: ReadOptions = DEFAULT_OPTIONS, *, on_gpu: bool = False
    ) -> None:
        super().__init__(options.clock, options.span)
        if spec.kind != "file":
            raise SourceError(
                f"--decoder torchcodec reads video files; for a {spec.kind} use --decoder pyav or opencv."
            )
        self.spec = spec
        self.threads = options.threads
        self.device = torch.device("cuda" if on_gpu else "cpu")
        self._decoder: Any = None
        self._next = 0
        self.info = SourceInfo(kind="file", uri=spec.target, decoder="torchcodec", live=False)

    def _make_decoder(self) -> Any:
        torchcodec = import_torchcodec()
        transforms = None
        # torchcodec applies decoder-side transforms on the CPU only ("Transforms are only supported for CPU
        # devices"); frames decoded on the GPU are resized there after decoding (see read)
        if self.output_size is not None and self.device.type == "cpu":
            width, height = self.output_size
            transforms = [torchcodec.transforms.Resize(size=(height, width))]
        return torchcodec.decoders.VideoDecoder(
            self.spec.target,
            num_ffmpeg_threads=self.threads,
            device=self.device,
            transforms=transforms,
        )

    def open(self) -> None:
        check_video_file(self.spec.target)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SourceError("--decode-on-gpu needs a CUDA GPU, but torch sees none; drop --decode-on-gpu.")
        try:
            self._decoder = self._make_decoder()
        except SourceError:
            raise
        except Exception as exc:  # torchcodec raises RuntimeError/ValueError for files FFmpeg cannot read
            # ... and the same when its own library cannot load: a good clip tells which it is.
            problem = torchcodec_problem()
            if problem is not None:
                raise SourceError(problem) from None
            raise not_a_video(self.spec.target, f"torchcodec: {str(exc).splitlines()[0]}") from None
        metadata = self._decoder.metadata
        if not len(self._decoder):
            raise not_a_video(self.spec.target, "no decodable video frame")
        self.info.width, self.info.height = metadata.width, metadata.height
        self.info.fps = metadata.average_fps
        self.info.frame_count = len(self._decoder)
        self.info.codec = metadata.codec
        self.info.duration_s = metadata.duration_seconds
        if self.device.type == "cuda":
            self._decoder.get_frame_at(0)  # the fallback status is known once a frame was decoded
            fallback = self._decoder.cpu_fallback
            if bool(fallback):
                self.warnings.append(
                    f"--decode-on-gpu: torchcodec fell back to CPU decoding ({fallback}); frames are decoded "
                    "on the CPU and copied to the GPU."
                )

    def set_output_size(self, size: tuple[int, int] | None) -> None:
        super().set_output_size(size)
        if self._decoder is not None:
            self._decoder = self._make_decoder()  # the resize is part of the decoder

    def read(self) -> Frame | None:
        """The next frame; a frame FFmpeg cannot decode (a damaged packet) is skipped and counted, like
        PyAV's, until too many fail in a row."""
        if self._decoder is None:
            return None
        bad_in_a_row = 0
        while self._next < len(self._decoder):
            index = self._next
            self._next += 1
            try:
                with self.span(DECODE):
                    frame = self._decoder.get_frame_at(index)
                    image = self._resized_on_device(frame.data)
            except RuntimeError:  # "Could not push packet to decode", ...
                self.frames_skipped += 1
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_CONSECUTIVE_BAD_FRAMES:
                    break
                continue
            return self._frame(image, float(frame.pts_seconds))
        self._end()
        return None

    def _resized_on_device(self, image: torch.Tensor) -> torch.Tensor:
        """``--decode-size`` for frames decoded on the GPU: an antialiased resize where they are, as part of
        decoding (on the CPU the decoder itself resized them)."""
        if self.output_size is None or self.device.type == "cpu":
            return image
        width, height = self.output_size
        if tuple(image.shape[-2:]) == (height, width):
            return image
        from torchvision.transforms.v2 import functional

        return functional.resize(image, [height, width], antialias=True)

    def close(self) -> None:
        self._decoder = None
