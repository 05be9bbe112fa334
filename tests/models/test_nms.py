"""Every NMS variant keeps what torchvision.ops.nms keeps in each group: the offset trick, the loop
over images (and its traced form), Cluster-NMS on sorted groups."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from detect.models.nms import batched_nms_by_offset, cluster_nms, nms_per_image, torchvision_nms_each_group


def _boxes(shape, generator, extent=80.0):
    corner = torch.rand(*shape, 2, generator=generator) * extent
    return torch.cat([corner, corner + 5 + torch.rand(*shape, 2, generator=generator) * extent / 2], dim=-1)


def test_batched_nms_by_offset_equals_nms_per_group():
    generator = torch.Generator().manual_seed(5)
    boxes, scores = _boxes((90,), generator), torch.rand(90, generator=generator)
    groups = torch.randint(0, 4, (90,), generator=generator)
    max_coordinate = float(boxes.max())
    keep = batched_nms_by_offset(boxes, scores, groups, 0.5, max_coordinate)
    assert (scores[keep][1:] <= scores[keep][:-1]).all()  # by descending score
    for group in range(4):
        members = (groups == group).nonzero().flatten()
        expected = members[nms(boxes[members], scores[members], 0.5)]
        assert sorted(keep[groups[keep] == group].tolist()) == sorted(expected.tolist())
    as_tensor = batched_nms_by_offset(boxes, scores, groups, 0.5, torch.tensor(max_coordinate))
    assert torch.equal(as_tensor, keep)  # a traced offset (a tensor) keeps the same


def test_nms_per_image_ignores_invalid_candidates_and_equals_its_traced_form():
    generator = torch.Generator().manual_seed(6)
    boxes, scores = _boxes((3, 40), generator), torch.rand(3, 40, generator=generator)
    valid = torch.rand(3, 40, generator=generator) > 0.3
    kept = nms_per_image(boxes, scores, valid, 0.5, float(boxes.max()))
    for image in range(3):
        members = valid[image].nonzero().flatten()
        expected = members[nms(boxes[image, members], scores[image, members], 0.5)]
        assert sorted(kept[image].nonzero().flatten().tolist()) == sorted(expected.tolist())
    traced = torch.jit.trace(lambda b, s, v: nms_per_image(b, s, v, 0.5, 200.0), (boxes, scores, valid))
    assert torch.equal(traced(boxes, scores, valid), kept)


@pytest.mark.parametrize("groups_nms", [cluster_nms, torchvision_nms_each_group])
def test_sorted_groups_nms_forms_equal_torchvision_nms_per_group(groups_nms):
    generator = torch.Generator().manual_seed(0)
    groups, count = 12, 60
    corner = torch.rand(groups, count, 2, generator=generator) * 80
    boxes = torch.cat([corner, corner + 5 + torch.rand(groups, count, 2, generator=generator) * 40], dim=-1)
    scores = torch.rand(groups, count, generator=generator).sort(dim=1, descending=True).values
    valid = scores > 0.2
    keep = groups_nms(boxes, valid, 0.45)
    for group in range(groups):
        indices = valid[group].nonzero().flatten()
        expected = indices[nms(boxes[group, indices], scores[group, indices], 0.45)]
        assert sorted(keep[group].nonzero().flatten().tolist()) == sorted(expected.tolist())


@pytest.mark.parametrize("groups_nms", [cluster_nms, torchvision_nms_each_group])
def test_sorted_groups_nms_forms_on_a_chain_needing_many_rounds(groups_nms):
    """Boxes in a row, each overlapping only its neighbours, by descending score: greedy NMS keeps every
    other box, and each decision waits for the one before (one rank per round, many convergence checks)."""
    count = 15
    x = torch.arange(count, dtype=torch.float32) * 4.0
    boxes = torch.stack([x, torch.zeros(count), x + 10.0, torch.full((count,), 10.0)], dim=-1)[None]
    keep = groups_nms(boxes, torch.ones(1, count, dtype=torch.bool), 0.4)  # neighbours: IoU 6/14 = 0.43
    expected = nms(boxes[0], torch.linspace(1.0, 0.5, count), 0.4)
    assert keep[0].nonzero().flatten().tolist() == sorted(expected.tolist()) == list(range(0, count, 2))


def _per_group(boxes, scores, groups, thresh):
    kept = torch.cat([torch.nonzero(groups == g).squeeze(1)[nms(boxes[groups == g], scores[groups == g], thresh)]
                      for g in groups.unique()])
    return kept[scores[kept].argsort(descending=True)]


def test_batched_nms_by_offset_cpu_and_shifted_forms_keep_the_same(monkeypatch):
    """On the CPU torchvision's batched_nms does the work; shifted apart (GPU, export) keeps the same."""
    generator = torch.Generator().manual_seed(0)
    boxes = _boxes((3000,), generator, extent=200.0)  # large enough for torchvision's loop over groups
    scores, groups = torch.rand(3000, generator=generator), torch.randint(0, 7, (3000,), generator=generator)
    expected = _per_group(boxes, scores, groups, 0.5)
    max_coordinate = float(boxes.max())
    assert torch.equal(batched_nms_by_offset(boxes, scores, groups, 0.5, max_coordinate), expected)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the shifted form
    assert torch.equal(batched_nms_by_offset(boxes, scores, groups, 0.5, max_coordinate), expected)


def test_nms_per_image_within_groups_of_slots():
    """The RPN of a feature pyramid: NMS within each level's slots, per image."""
    generator = torch.Generator().manual_seed(7)
    boxes, scores = _boxes((2, 60), generator), torch.rand(2, 60, generator=generator)
    valid = torch.ones(2, 60, dtype=torch.bool)
    levels = torch.arange(60) // 20
    kept = nms_per_image(boxes, scores, valid, 0.5, float(boxes.max()), groups=levels)
    for image in range(2):
        expected = _per_group(boxes[image], scores[image], levels, 0.5)
        assert sorted(kept[image].nonzero().flatten().tolist()) == sorted(expected.tolist())
