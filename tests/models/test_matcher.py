"""Matching and sampling: thresholds, the best-anchor rule, SSD's claim rule, padding invariance,
sampler counts and ratios."""

from __future__ import annotations

import torch

from detect.iou import box_iou
from detect.models.boxes import pad_ground_truth
from detect.models.matcher import IGNORE, NEGATIVE, POSITIVE, claim_best_references, match, sample_balanced


def _boxes(count, generator, extent=100.0):
    xy = torch.rand(count, 2, generator=generator) * extent
    wh = torch.rand(count, 2, generator=generator) * extent / 2 + 2
    return torch.cat([xy, xy + wh], dim=1)


def test_thresholds_and_ignored_band():
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    references = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0], [0.0, 0.0, 10.0, 2.0], [50, 50, 60, 60]]])
    iou = box_iou(references, gt)  # 1.0, 0.6, 0.2, 0.0
    _, labels = match(iou, torch.ones(1, 1, dtype=torch.bool), fg_thresh=0.7, bg_thresh_hi=0.3)
    assert labels.tolist() == [[POSITIVE, IGNORE, NEGATIVE, NEGATIVE]]
    _, labels = match(iou, torch.ones(1, 1, dtype=torch.bool), 0.5, 0.5, bg_thresh_lo=0.1)
    assert labels.tolist() == [[POSITIVE, POSITIVE, NEGATIVE, IGNORE]]


def test_best_anchor_rule_makes_every_ground_truth_positive():
    generator = torch.Generator().manual_seed(1)
    anchors = _boxes(200, generator)[None]
    gt = torch.tensor([[[3.0, 3.0, 5.0, 70.0], [80.0, 10.0, 82.0, 12.0], [0, 0, 0, 0]]])  # thin, tiny, padding
    valid = torch.tensor([[True, True, False]])
    iou = box_iou(anchors, gt)
    matched, labels = match(iou, valid, 0.7, 0.3, best_match_positive=True)
    _, without_rule = match(iou, valid, 0.7, 0.3)
    for g in range(2):
        best = iou[0, :, g].max()
        best_anchors = (iou[0, :, g] == best).nonzero().squeeze(1)
        assert best < 0.7 and (labels[0, best_anchors] == POSITIVE).all()
    assert (without_rule == POSITIVE).sum() == 0
    assert (matched[0, labels[0] == POSITIVE] < 2).all()  # never matched to padding


def test_each_ground_truth_claims_its_best_reference_whatever_the_iou():
    references = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [60, 60, 70, 70]]])
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [21.0, 21.0, 23.0, 23.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    iou = box_iou(references, gt)  # the second object overlaps its best reference by 0.01
    matched, labels = match(iou, valid, 0.5, 0.5)
    assert labels.tolist() == [[POSITIVE, NEGATIVE, NEGATIVE]]
    matched, labels = claim_best_references(iou, valid, matched, labels)
    assert labels.tolist() == [[POSITIVE, POSITIVE, NEGATIVE]]
    assert matched[0, :2].tolist() == [0, 1]  # padding claims nothing


def test_no_ground_truth_is_never_positive_even_at_threshold_zero():
    iou = torch.zeros(1, 4, 1)
    _, labels = match(iou, torch.zeros(1, 1, dtype=torch.bool), 0.0, 0.0)
    assert not (labels == POSITIVE).any()


def test_padding_does_not_change_matching():
    generator = torch.Generator().manual_seed(2)
    anchors = _boxes(100, generator)
    per_image_gt = [_boxes(3, generator), _boxes(1, generator), torch.zeros(0, 4)]
    targets = [{"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)} for b in per_image_gt]
    gt, _, valid = pad_ground_truth(targets, torch.device("cpu"))
    iou = box_iou(anchors[None].expand(3, -1, -1), gt)
    matched, labels = match(iou, valid, 0.5, 0.4, best_match_positive=True)
    for i, boxes in enumerate(per_image_gt):
        one_iou = box_iou(anchors[None], boxes[None]) if len(boxes) else torch.zeros(1, 100, 0)
        if len(boxes):
            one_matched, one_labels = match(
                one_iou, torch.ones(1, len(boxes), dtype=torch.bool), 0.5, 0.4, best_match_positive=True)
            assert torch.equal(one_labels[0], labels[i])
            assert torch.equal(one_matched[0][one_labels[0] == POSITIVE], matched[i][labels[i] == POSITIVE])
        else:
            assert (labels[i] == NEGATIVE).all()  # no ground truth: every anchor is background


def test_sampler_counts_ratios_and_membership():
    generator = torch.Generator().manual_seed(3)
    labels = torch.full((4, 1000), IGNORE, dtype=torch.int8)
    labels[0, :300], labels[0, 300:900] = POSITIVE, NEGATIVE   # many of both
    labels[1, :10], labels[1, 10:500] = POSITIVE, NEGATIVE     # few positives: negatives fill up
    labels[2, :50] = NEGATIVE                                  # few negatives, no positives
    # image 3: nothing to sample
    sampled, valid = sample_balanced(labels, 256, 0.5, generator=generator)
    assert sampled.shape == valid.shape == (4, 256)
    picked = labels.gather(1, sampled)
    num_pos = ((picked == POSITIVE) & valid).sum(1).tolist()
    num_neg = ((picked == NEGATIVE) & valid).sum(1).tolist()
    assert num_pos == [128, 10, 0, 0] and num_neg == [128, 246, 50, 0]
    assert ((picked != IGNORE) | ~valid).all()  # never an ignored reference
    for i in range(4):  # no index twice; valid slots first, positives before negatives
        chosen = sampled[i][valid[i]]
        assert len(chosen.unique()) == len(chosen)
        assert valid[i].tolist() == sorted(valid[i].tolist(), reverse=True)
        kinds = picked[i][valid[i]].tolist()
        assert kinds == sorted(kinds, reverse=True)


def test_sampler_is_random_but_reproducible():
    labels = torch.zeros(2, 500, dtype=torch.int8)
    labels[:, :200] = POSITIVE
    first = sample_balanced(labels, 64, 0.25, generator=torch.Generator().manual_seed(5))[0]
    again = sample_balanced(labels, 64, 0.25, generator=torch.Generator().manual_seed(5))[0]
    other = sample_balanced(labels, 64, 0.25, generator=torch.Generator().manual_seed(6))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first[0], first[1])  # images drawn independently


def test_sampler_with_fewer_candidates_than_the_batch_size():
    labels = torch.tensor([[POSITIVE, NEGATIVE, IGNORE]], dtype=torch.int8)
    sampled, valid = sample_balanced(labels, 256, 0.5)
    assert sampled.shape == (1, 3) and sorted(sampled[0][valid[0]].tolist()) == [0, 1]
