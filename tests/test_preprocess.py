from __future__ import annotations

import pytest
import torch

from framescope.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocessor, build_transform

CLASSIFY = InputSpec("classification", (224, 224), resize=256)
SSD = InputSpec("detection", (300, 300), resize=300, mean=None, std=None)
RCNN = InputSpec("detection", None, resize=800, max_size=1333, mean=None, std=None)
SEGMENT = InputSpec("segmentation", None, resize=520)


def frames(n: int = 2, h: int = 240, w: int = 320, value: int | None = None) -> torch.Tensor:
    if value is not None:
        return torch.full((n, 3, h, w), value, dtype=torch.uint8)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("level", ["simple", "medium", "complex"])
def test_classification_levels_produce_the_model_input(level: str) -> None:
    out = Preprocessor(level, CLASSIFY)(frames())
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32


def test_simple_normalises_exactly() -> None:
    out = Preprocessor("simple", CLASSIFY)(frames(value=128))
    assert isinstance(out, torch.Tensor)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        expected = (128 / 255 - mean) / std
        assert torch.allclose(out[:, channel], torch.full_like(out[:, channel], expected), atol=1e-5)


def test_simple_squashes_while_medium_keeps_the_aspect_ratio() -> None:
    """A frame whose left half is black and right half white: squashing keeps the split in the middle,
    the medium centre crop of a wide frame keeps it in the middle too but cuts the frame's sides away."""
    batch = torch.zeros((1, 3, 100, 400), dtype=torch.uint8)
    batch[..., 300:] = 255  # only the right quarter is white
    simple = Preprocessor("simple", CLASSIFY)(batch)
    medium = Preprocessor("medium", CLASSIFY)(batch)
    assert isinstance(simple, torch.Tensor) and isinstance(medium, torch.Tensor)
    white_simple = (simple[0, 0] > 0).float().mean().item()
    white_medium = (medium[0, 0] > 0).float().mean().item()
    assert white_simple == pytest.approx(0.25, abs=0.02)
    # resize shorter side 100->256 makes the frame 1024 wide; a 224 centre crop sees no white at all.
    assert white_medium == 0.0


def test_complex_adds_photometric_work_on_the_same_shape() -> None:
    torch.manual_seed(0)
    medium = Preprocessor("medium", CLASSIFY)(frames())
    complex_ = Preprocessor("complex", CLASSIFY)(frames())
    assert isinstance(medium, torch.Tensor) and isinstance(complex_, torch.Tensor)
    assert medium.shape == complex_.shape
    assert not torch.allclose(medium, complex_)
    names = [type(t).__name__ for t in build_transform("complex", CLASSIFY).transforms]
    assert names == [
        "Resize",
        "CenterCrop",
        "ColorJitter",
        "GaussianBlur",
        "RandomHorizontalFlip",
        "ToDtype",
        "Normalize",
    ]


def test_detection_input_is_scaled_but_not_normalised() -> None:
    out = Preprocessor("medium", SSD)(frames(value=255))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, 300, 300)
    assert torch.allclose(out, torch.ones_like(out))


def test_variable_size_models_resize_the_shorter_side_with_a_cap() -> None:
    out = Preprocessor("simple", RCNN)(frames(1, 240, 320))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 800, 1066)
    wide = Preprocessor("simple", RCNN)(frames(1, 100, 1000))
    assert isinstance(wide, torch.Tensor) and wide.shape[-1] == 1333
    seg = Preprocessor("medium", SEGMENT)(frames(1, 240, 320))
    assert isinstance(seg, torch.Tensor) and seg.shape == (1, 3, 520, 693)


def test_mixed_size_batches() -> None:
    mixed = [frames(1, 120, 160)[0], frames(1, 90, 200)[0]]
    classified = Preprocessor("medium", CLASSIFY)(mixed)
    assert isinstance(classified, torch.Tensor) and classified.shape == (2, 3, 224, 224)
    detected = Preprocessor("simple", RCNN)(mixed)
    assert isinstance(detected, list)  # detection models take images of different sizes
    assert [tuple(t.shape) for t in detected] == [(3, 800, 1066), (3, 600, 1333)]  # longer side capped
    segmented = Preprocessor("simple", SEGMENT)(mixed)
    assert isinstance(segmented, torch.Tensor) and segmented.shape[0] == 2


def test_list_and_tensor_batches_agree() -> None:
    batch = frames()
    as_tensor = Preprocessor("medium", CLASSIFY)(batch)
    as_list = Preprocessor("medium", CLASSIFY)(list(batch))
    assert isinstance(as_tensor, torch.Tensor) and isinstance(as_list, torch.Tensor)
    assert torch.allclose(as_tensor, as_list, atol=1e-5)


def test_channels_last_views_give_the_same_result() -> None:
    """Batches from the batcher are channels-last views of stacked HWC frames."""
    hwc = frames().permute(0, 2, 3, 1).contiguous()
    view = hwc.permute(0, 3, 1, 2)
    assert not view.is_contiguous()
    out_view = Preprocessor("medium", CLASSIFY)(view)
    out_contig = Preprocessor("medium", CLASSIFY)(view.contiguous())
    assert isinstance(out_view, torch.Tensor) and isinstance(out_contig, torch.Tensor)
    assert torch.allclose(out_view, out_contig, atol=1e-5)


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="level = 'max' should be one of simple, medium, complex"):
        build_transform("max", CLASSIFY)
