"""Padded detections: empty slots zeroed, cut per image at the edges."""

from __future__ import annotations

import torch

from detect.detections.padded import padded_detections, split_detections


def test_padded_detections_zero_the_empty_slots_and_split_cuts_each_image():
    boxes = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) + 1
    scores = torch.tensor([[0.9, 0.5, -1.0], [-1.0, -1.0, -1.0]])
    labels = torch.tensor([[2, 1, 3], [1, 1, 1]])
    padded = padded_detections(boxes, scores, labels, scores >= 0)
    assert padded["num"].tolist() == [2, 0]
    assert not padded["boxes"][0, 2:].any() and not padded["scores"][1].any() and not padded["labels"][1].any()
    first, second = split_detections(padded)
    assert torch.equal(first["boxes"], boxes[0, :2]) and first["labels"].tolist() == [2, 1]
    assert torch.equal(first["scores"], scores[0, :2])
    assert second["boxes"].shape == (0, 4) and second["scores"].shape == (0,)
