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
