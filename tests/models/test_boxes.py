"""Box primitives: coding (round trip, weights, SSD variances, clamping, parity with torchvision's
BoxCoder), clipping, batched IoU against torchvision, padded ground truth."""

from __future__ import annotations

import math

import torch
from torchvision.models.detection._utils import BoxCoder

from detect.models.boxes import (
    DELTA_CLAMP,
    clip_boxes,
    decode,
    encode,
    pad_ground_truth,
    variance_weights,
)


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


def test_ssd_variances_divide_the_offsets_and_round_trip():
    generator = torch.Generator().manual_seed(2)
    boxes, priors = _random_boxes(500, generator), _random_boxes(500, generator)
    weights = variance_weights((0.1, 0.2))
    assert weights == (10.0, 10.0, 5.0, 5.0)
    codes = encode(boxes, priors, weights)
    torch.testing.assert_close(decode(codes, priors, weights), boxes, rtol=1e-4, atol=1e-3)
    # A box equal to its prior encodes to zero; a shift of one pixel is 1 / (0.1 x width).
    torch.testing.assert_close(encode(priors, priors, weights), torch.zeros(500, 4), rtol=0, atol=1e-5)
    shifted = priors + torch.tensor([1.0, 0.0, 1.0, 0.0])
    width = priors[:, 2] - priors[:, 0]
    torch.testing.assert_close(encode(shifted, priors, weights)[:, 0], 1.0 / (width * 0.1), rtol=1e-4, atol=1e-4)


def test_encoding_an_empty_box_is_finite():
    reference = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert torch.isfinite(encode(torch.zeros(1, 4), reference, (10.0, 10.0, 5.0, 5.0))).all()


def test_pad_ground_truth_with_an_empty_image():
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    boxes, labels, valid = pad_ground_truth(targets, torch.device("cpu"))
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[1, 2], [0, 0]]
    assert valid.tolist() == [[True, True], [False, False]] and not boxes[1].any()
    empty = pad_ground_truth(targets[1:], torch.device("cpu"))
    assert empty[0].shape == (1, 1, 4) and empty[2].shape == (1, 1) and not empty[2].any()
