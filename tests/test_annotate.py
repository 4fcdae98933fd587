from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from tests.conftest import run_cli

from framescope.config import AnnotateConfig
from framescope.tools.annotate import COCO_FILE, CocoBuilder, annotate, category_names, colour, draw

FAST = "ssdlite320_mobilenet_v3_large"  # random weights score every class 1/91 ~ 0.011


def run_annotate(image_dir: Path, out: Path, **kw: Any) -> dict[str, Any]:
    kw.setdefault("model_name", FAST)
    kw.setdefault("weights", "none")
    kw.setdefault("threshold", 0.01)
    kw.setdefault("device", "cpu")
    annotate(AnnotateConfig(input=str(image_dir), output=str(out), **kw))
    return json.loads((out / COCO_FILE).read_text())


def test_coco_document_is_a_usable_dataset(image_dir: Path, tmp_path: Path) -> None:
    coco = run_annotate(image_dir, tmp_path, batch_size=3)
    assert set(coco) == {"info", "images", "annotations", "categories"}
    images = {img["id"]: img for img in coco["images"]}
    assert sorted(img["file_name"] for img in images.values()) == [
        "img1.png",
        "img10.png",
        "img2.jpg",
        "sub/img3.jpg",
    ]
    for img in images.values():
        height, width = cv2.imread(str(image_dir / img["file_name"])).shape[:2]
        assert (img["width"], img["height"]) == (width, height)
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    assert categories[1] == "person" and "__background__" not in categories.values()
    ids = [a["id"] for a in coco["annotations"]]
    assert ids == list(range(1, len(ids) + 1)) and ids
    for a in coco["annotations"]:
        img = images[a["image_id"]]
        assert a["category_id"] in categories
        x, y, w, h = a["bbox"]
        assert w >= 0 and h >= 0 and a["area"] == pytest.approx(w * h, abs=0.05)
        assert x >= -0.01 and x + w <= img["width"] + 0.01 and y >= -0.01 and y + h <= img["height"] + 0.01
        assert a["score"] >= 0.01 and a["iscrowd"] == 0
    assert coco["info"]["skipped_files"] == ["broken.jpg"]


def test_annotated_images_mirror_the_input_tree_with_boxes_drawn(image_dir: Path, tmp_path: Path) -> None:
    run_annotate(image_dir, tmp_path)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["annotations.json", "img1.png", "img10.png", "img2.jpg", "sub/img3.jpg"]
    original = cv2.imread(str(image_dir / "img1.png"))
    drawn = cv2.imread(str(tmp_path / "img1.png"))
    assert drawn.shape == original.shape
    assert (np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 0).mean() > 0.01


def test_threshold_filters_detections(image_dir: Path, tmp_path: Path) -> None:
    assert run_annotate(image_dir, tmp_path / "high", threshold=0.5)["annotations"] == []
    assert len(run_annotate(image_dir, tmp_path / "low", threshold=0.01)["annotations"]) > 0


@pytest.mark.slow
def test_batching_does_not_change_the_result(image_dir: Path, tmp_path: Path) -> None:
    # ssd300's random weights give distinct scores; ssdlite's tie at 1/91, which makes the choice among
    # equal-scoring boxes arbitrary in any NMS
    one = run_annotate(image_dir, tmp_path / "one", batch_size=1, model_name="ssd300_vgg16", threshold=0.0)
    many = run_annotate(image_dir, tmp_path / "many", batch_size=4, model_name="ssd300_vgg16", threshold=0.0)

    def coordinates(coco: dict[str, Any]) -> list[float]:
        return [v for a in coco["annotations"] for v in a["bbox"]]

    assert len(one["annotations"]) == len(many["annotations"])
    assert coordinates(one) == pytest.approx(coordinates(many), abs=0.05)


def test_draw_outlines_each_box_in_its_category_colour() -> None:
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    out = draw(image, torch.tensor([[10.0, 20.0, 60.0, 80.0]]), [0.9], [1], ["__background__", "person"])
    assert tuple(out[:, 50, 10].tolist()) == colour(1)  # left edge
    assert tuple(out[:, 50, 30].tolist()) == (0, 0, 0)  # inside stays untouched
    assert draw(image, torch.zeros(0, 4), [], [], ["x"]) is image


def test_unnamed_ids_that_were_used_still_resolve() -> None:
    builder = CocoBuilder(category_names(FAST, 91))
    image = builder.add_image("a.jpg", 10, 10)
    builder.add_detections(image, [[0, 0, 1, 1]], [0.5], [12])  # COCO's gap at 12 is "N/A"
    categories = {c["id"]: c["name"] for c in builder.document({})["categories"]}
    assert categories[12] == "unnamed_12" and 26 not in categories


def test_cli_flags_and_summary(image_dir: Path, tmp_path: Path) -> None:
    for flag in ("--model_name", "--model-name"):
        out = tmp_path / flag.strip("-")
        result = run_cli(
            "annotate", "-i", str(image_dir), "-o", str(out), flag, FAST, "--threshold", "0.01",
            "--batch-size", "2", "--device", "cpu", "--weights", "none",
        )  # fmt: skip
        assert result.code == 0, result.err
        assert re.search(r"annotated 4 images with \d+ boxes \(score >= 0.01\)", result.out)
        assert "skipped 1 file(s) that are not readable images: broken.jpg" in result.out
    help_text = " ".join(run_cli("annotate", "--help").out.split())
    assert (
        "(default: fasterrcnn_resnet50_fpn_v2)" in help_text
        and "minimum score kept (default: 0.7)" in help_text
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_name", "resnet50"], r"--model_name resnet50 is not a detection model"),
        (["--model_name", "fasterrcnn"], r"unknown model 'fasterrcnn'; did you mean"),
        (["--threshold", "1.5"], r"--threshold 1.5 should be a score from 0 to 1"),
        (["--batch-size", "0"], r"batch_size = 0 should be a positive integer"),
        (["--device", "tpu"], r"--device 'tpu' should be auto, cpu, cuda or cuda:N"),
        (["-i", "{missing}"], r"-i '.*missing' is not a directory"),
        (["-i", "{empty}"], r"has no images"),
        (["-o", "{a_file}"], r"-o '.*a_file' exists and is not a directory"),
        (["--weights", "DEFAULT"], r"could not download the DEFAULT weights .* pass --weights PATH"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*a: object, **k: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    values = {
        "missing": str(tmp_path / "missing"),
        "empty": str(tmp_path / "empty"),
        "a_file": str(tmp_path / "a_file"),
    }
    argv = [
        "annotate",
        "-i",
        str(image_dir),
        "-o",
        str(tmp_path / "out"),
        "--model_name",
        FAST,
        "--weights",
        "none",
    ]
    argv += [a.format(**values) for a in args]
    result = run_cli(*argv)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(image_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "annotate", "-i", str(image_dir), "-o", str(tmp_path), "--device", "cuda", "--weights", "none"
    )
    assert result.code == 2 and "--device cuda needs a CUDA GPU" in result.err


@pytest.mark.slow
def test_the_default_model_runs(image_dir: Path, tmp_path: Path) -> None:
    coco = run_annotate(
        image_dir, tmp_path, model_name="fasterrcnn_resnet50_fpn_v2", threshold=0.0, batch_size=2
    )
    assert len(coco["images"]) == 4


def test_weights_from_a_state_dict_file(image_dir: Path, tmp_path: Path) -> None:
    from framescope.models import build_model

    path = tmp_path / "ssdlite.pt"
    torch.save(build_model(FAST, seed=3).state_dict(), path)
    from_file = run_annotate(image_dir, tmp_path / "file", weights=str(path))
    seeded = run_annotate(image_dir, tmp_path / "seeded", weights="none", seed=3)
    assert from_file["info"]["weights"] == str(path)
    assert [a["bbox"] for a in from_file["annotations"]] == [a["bbox"] for a in seeded["annotations"]]
