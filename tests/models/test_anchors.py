"""Anchors: equal torchvision's AnchorGenerator for the same sizes and ratios; cached per size."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from detect.models.anchors import AnchorGenerator


@pytest.mark.parametrize(
    "sizes, ratios, feature_hw",
    [((128.0, 256.0, 512.0), (0.5, 1.0, 2.0), (5, 7)), ((32.0, 64.0), (0.5, 1.0, 2.0, 3.0), (3, 4))],
)
def test_equal_to_torchvision(sizes, ratios, feature_hw):
    ours = AnchorGenerator(list(sizes), list(ratios), stride=16)
    height, width = feature_hw
    theirs = TorchvisionAnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    images = ImageList(torch.zeros(1, 3, height * 16, width * 16), [(height * 16, width * 16)])
    expected = theirs(images, [torch.zeros(1, 8, height, width)])[0]
    anchors = ours(height, width, "cpu")
    assert ours.num_anchors == len(sizes) * len(ratios)
    assert anchors.shape == (height * width * ours.num_anchors, 4)
    torch.testing.assert_close(anchors, expected, rtol=0, atol=0)


def test_shapes_and_areas():
    ours = AnchorGenerator([128.0], [0.5, 1.0, 2.0], stride=16)
    anchors = ours(2, 3, "cpu")
    first = anchors[:3]  # location (0, 0), centred on pixel (0, 0)
    widths, heights = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
    torch.testing.assert_close(heights / widths, torch.tensor([0.5, 1.0, 2.0]), rtol=0.02, atol=0)
    torch.testing.assert_close((widths * heights).sqrt(), torch.full((3,), 128.0), rtol=0.01, atol=0)
    # Location (0, 1) is one stride to the right.
    torch.testing.assert_close(anchors[3:6] - first, torch.tensor([[16.0, 0, 16, 0]]).expand(3, 4))


def test_cached_per_feature_map_size():
    ours = AnchorGenerator([64.0], [1.0])
    assert ours(4, 5, "cpu") is ours(4, 5, "cpu")
    assert ours(4, 6, "cpu").shape == (24, 4)


@pytest.mark.parametrize("padded_hw", [(128, 192), (96, 160)])  # 96 / 32 = 3: an odd map below the max-pool level
def test_pyramid_equals_torchvision(padded_hw):
    sizes, ratios, strides = (32.0, 64.0, 128.0, 256.0, 512.0), (0.5, 1.0, 2.0), (4, 8, 16, 32, 64)
    ours = AnchorGenerator(list(sizes), list(ratios), stride=strides)
    height, width = padded_hw
    shapes = [(-(-height // s), -(-width // s)) for s in strides]
    theirs = TorchvisionAnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=(ratios,) * 5)
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    expected = theirs(images, [torch.zeros(1, 8, h, w) for h, w in shapes])[0]
    assert ours.num_anchors == 3
    torch.testing.assert_close(ours.pyramid(shapes, "cpu"), expected, rtol=0, atol=0)


def test_pyramid_needs_one_size_per_level():
    with pytest.raises(ValueError, match="one anchor size per level"):
        AnchorGenerator([32.0, 64.0], [1.0], stride=(4, 8, 16))


def test_pyramid_with_sizes_per_level_equals_torchvision():
    """fasterrcnn_mobilenet_v3_large_fpn's anchors: all five sizes on each of three maps (strides 32, 32, 64)."""
    sizes, ratios = [32.0, 64.0, 128.0, 256.0, 512.0], [0.5, 1.0, 2.0]
    ours = AnchorGenerator([sizes] * 3, ratios, stride=(32, 32, 64))
    shapes = [(10, 13), (10, 13), (5, 7)]
    theirs = TorchvisionAnchorGenerator(sizes=(tuple(sizes),) * 3, aspect_ratios=(tuple(ratios),) * 3)
    images = ImageList(torch.zeros(1, 3, 320, 416), [(320, 416)])
    expected = theirs(images, [torch.zeros(1, 8, h, w) for h, w in shapes])[0]
    assert ours.num_anchors == 15
    torch.testing.assert_close(ours.pyramid(shapes, "cpu"), expected, rtol=0, atol=0)


def test_sizes_per_level_need_a_pyramid_and_equal_counts():
    with pytest.raises(ValueError, match="need a feature pyramid"):
        AnchorGenerator([[32.0, 64.0]], [1.0], stride=16)
    with pytest.raises(ValueError, match="same number of anchor sizes"):
        AnchorGenerator([[32.0, 64.0], [128.0]], [1.0], stride=(16, 32))
