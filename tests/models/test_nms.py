"""detect.models.nms: grouped NMS keeps, in both its forms, what NMS within each group keeps."""

from __future__ import annotations

import torch
from torchvision.ops import nms

from detect.models import nms as nms_module
from detect.models.nms import grouped_nms


def _boxes(count: int, groups: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(count, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + torch.rand(count, 2, generator=generator) * 80 + 2], dim=1)
    return boxes, torch.rand(count, generator=generator), torch.randint(0, groups, (count,), generator=generator)


def _per_group(boxes, scores, groups, thresh):
    kept = torch.cat([torch.nonzero(groups == g).squeeze(1)[nms(boxes[groups == g], scores[groups == g], thresh)]
                      for g in groups.unique()])
    return kept[scores[kept].argsort(descending=True)]


def test_cpu_and_shifted_forms_keep_the_boxes_nms_keeps_per_group(monkeypatch):
    boxes, scores, groups = _boxes(3000, 7)  # large enough for torchvision's loop over groups on the CPU
    expected = _per_group(boxes, scores, groups, 0.5)
    assert torch.equal(grouped_nms(boxes, scores, groups, 0.5, 282.0), expected)
    monkeypatch.setattr(nms_module.torch.jit, "is_tracing", lambda: True)  # the shifted form (CUDA, export)
    assert torch.equal(grouped_nms(boxes, scores, groups, 0.5, 282.0), expected)
