"""SSD default boxes (their encoding: tests/models/test_boxes.py)."""

from __future__ import annotations

import math

import torch

from detect.models.default_boxes import box_scales, boxes_per_location, default_boxes

SSD300_MAPS = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
SSD300_RATIOS = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]


def test_ssd300_has_8732_default_boxes_inside_the_image():
    scales = box_scales(6, 0.2, 0.9, 0.1)
    boxes = default_boxes(SSD300_MAPS, scales, SSD300_RATIOS)
    assert boxes.shape == (8732, 4)
    assert boxes.dtype == torch.float32
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_ssd512_has_24564_default_boxes():
    maps = [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    ratios = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]
    assert default_boxes(maps, box_scales(7, 0.15, 0.9, 0.07), ratios).shape == (24564, 4)


def test_paper_scales_for_voc():
    scales = box_scales(6, 0.2, 0.9, 0.1)
    expected = [0.1, 0.2, 0.375, 0.55, 0.725, 0.9, 1.075]
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(scales, expected))
    assert box_scales(3, 0.2, 0.8, None)[:3] == [0.2, 0.5, 0.8]


def test_first_cell_box_shapes_and_centres():
    scales = box_scales(6, 0.2, 0.9, 0.1)
    boxes = default_boxes(SSD300_MAPS, scales, SSD300_RATIOS)
    # The central cell of the 5 x 5 map (unclipped): order 1:1, sqrt(s s') 1:1, 2:1, 1:2, 3:1, 1:3.
    per_cell = boxes_per_location(SSD300_RATIOS)
    offset = sum(h * w * n for (h, w), n in zip(SSD300_MAPS[:3], per_cell[:3])) + 12 * per_cell[3]
    cell = boxes[offset : offset + per_cell[3]]
    centre = (cell[:, :2] + cell[:, 2:]) / 2
    size = cell[:, 2:] - cell[:, :2]
    assert torch.allclose(centre, torch.full_like(centre, 0.5), atol=1e-6)
    s, s_next = scales[3], scales[4]
    expected = [(s, s), (math.sqrt(s * s_next),) * 2]
    for ratio in (2.0, 3.0):
        expected += [(s * math.sqrt(ratio), s / math.sqrt(ratio)), (s / math.sqrt(ratio), s * math.sqrt(ratio))]
    assert torch.allclose(size, torch.tensor(expected, dtype=torch.float32), atol=1e-6)


def test_explicit_steps_place_centres_like_caffe():
    boxes = default_boxes([(2, 2)], [0.2, 0.3], [[]], steps=[100.0], image_size=(300, 300))
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2)[::2]  # first square box of each cell
    assert torch.allclose(centres, torch.tensor([[50, 50], [150, 50], [50, 150], [150, 150]]) / 300, atol=1e-6)


