"""Box coding: round trip, weights, clamping, parity with torchvision's BoxCoder, clipping."""

from __future__ import annotations

import math

import torch
from torchvision.models.detection._utils import BoxCoder

from detect.models.box_coder import DELTA_CLAMP, clip_boxes, decode, encode


def _random_boxes(count, generator):
    xy = torch.rand(count, 2, generator=generator) * 200
    wh = torch.rand(count, 2, generator=generator) * 100 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_round_trip_with_weights_and_batch_dims():
    generator = torch.Generator().manual_seed(0)
    boxes = _random_boxes(60, generator).reshape(3, 20, 4)
    references = _random_boxes(60, generator).reshape(3, 20, 4)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        deltas = encode(boxes, references, weights)
        torch.testing.assert_close(decode(deltas, references, weights), boxes, rtol=1e-4, atol=1e-3)


def test_equal_to_torchvision_box_coder():
    generator = torch.Generator().manual_seed(1)
    boxes, references = _random_boxes(50, generator), _random_boxes(50, generator)
    weights = (10.0, 10.0, 5.0, 5.0)
    coder = BoxCoder(weights)
    torch.testing.assert_close(encode(boxes, references, weights), coder.encode_single(boxes, references))
    deltas = torch.randn(50, 4, generator=generator)
    torch.testing.assert_close(decode(deltas, references, weights), coder.decode_single(deltas, references))


def test_decode_clamps_large_size_deltas():
    reference = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), reference)
    assert torch.isfinite(box).all()
    torch.testing.assert_close(box[0, 2] - box[0, 0], torch.tensor(10.0 * math.exp(DELTA_CLAMP)))


def test_clip_to_each_images_size():
    boxes = torch.tensor([[[-5.0, -5.0, 50.0, 50.0]], [[-5.0, 10.0, 50.0, 50.0]]])
    clipped = clip_boxes(boxes, heights=torch.tensor([40, 30]), widths=torch.tensor([20, 60]))
    torch.testing.assert_close(clipped, torch.tensor([[[0.0, 0.0, 20.0, 40.0]], [[0.0, 10.0, 50.0, 30.0]]]))
