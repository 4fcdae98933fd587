"""Verify the environment: torch and torchvision import together and torchvision's C++ ops (nms) run.

A torchvision built for another torch fails here with "operator torchvision::nms does not exist", which is
what pairing the registry's torchvision with a local CPU-only torch wheel produces.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        import torch
        import torchvision
        from torchvision.ops import nms
    except Exception as exc:
        print(f"check-env: importing torch/torchvision failed: {exc}", file=sys.stderr)
        return 1
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    try:
        kept = nms(boxes, scores, iou_threshold=0.5).tolist()
    except Exception as exc:
        print(
            f"check-env: torchvision.ops.nms failed ({exc}); torch {torch.__version__} and torchvision "
            f"{torchvision.__version__} are not a matching pair. Recreate the environment: "
            "make clean-env test",
            file=sys.stderr,
        )
        return 1
    if kept != [0, 2]:
        print(f"check-env: torchvision.ops.nms returned {kept}, expected [0, 2]", file=sys.stderr)
        return 1
    import av
    import cv2

    if "libx264" not in av.codecs_available:
        print("check-env: PyAV has no libx264 encoder; tests cannot make their clips", file=sys.stderr)
        return 1
    print(
        f"check-env: ok (torch {torch.__version__}, torchvision {torchvision.__version__}, nms ok, "
        f"PyAV {av.__version__}, OpenCV {cv2.__version__}, CUDA available: {torch.cuda.is_available()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
