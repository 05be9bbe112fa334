"""SSD matching, hard negative mining and the batched multibox loss."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from detect.models.boxes import pad_ground_truth
from detect.models.default_boxes import box_scales, default_boxes
from detect.models.ssd_loss import MultiBoxLoss, hard_negative_mask, match_default_boxes

NUM_CLASSES = 3
CPU = torch.device("cpu")


def _priors(size: int = 96) -> torch.Tensor:
    maps = [(12, 12), (6, 6), (3, 3), (1, 1)]
    ratios = [[2.0], [2.0, 3.0], [2.0], [2.0]]
    return default_boxes(maps, box_scales(4, 0.2, 0.9, 0.1), ratios) * size


def _random_targets(generator: torch.Generator, counts: list[int], size: int = 96) -> list[dict]:
    targets = []
    for count in counts:
        corner = torch.rand(count, 2, generator=generator) * (size - 30)
        extent = 8 + torch.rand(count, 2, generator=generator) * 22
        targets.append({
            "boxes": torch.cat([corner, corner + extent], dim=1),
            "labels": torch.randint(1, NUM_CLASSES + 1, (count,), generator=generator),
        })
    return targets


def test_every_ground_truth_gets_its_best_default_box_and_iou_threshold_applies():
    generator = torch.Generator().manual_seed(1)
    priors = _priors()
    targets = _random_targets(generator, [5, 3])
    # A tiny box overlaps no default box by 0.5: it must still take its best one.
    targets[1]["boxes"][0] = torch.tensor([40.0, 40.0, 43.0, 43.0])
    gt_boxes, _, valid = pad_ground_truth(targets, CPU)
    matched, positive = match_default_boxes(priors, gt_boxes, valid, 0.5)
    free_count = 0
    for image, target in enumerate(targets):
        iou = box_iou(target["boxes"], priors)
        best_prior = iou.argmax(dim=1)
        assert positive[image, best_prior].all()
        # Each best box goes to a ground truth that wanted it (one wins where two share a best box).
        assert (best_prior[matched[image, best_prior]] == best_prior).all()
        above = iou.max(dim=0).values >= 0.5
        forced = torch.zeros_like(above).index_fill(0, best_prior, True)
        assert (positive[image] == (above | forced)).all()
        # Boxes not claimed as a best box take the ground truth they overlap most.
        free = above & ~forced
        assert (matched[image, free] == iou.argmax(dim=0)[free]).all()
        free_count += int(free.sum())
    assert free_count > 0


def test_hard_negative_mining_keeps_exactly_the_top_losses():
    generator = torch.Generator().manual_seed(2)
    loss = torch.rand(3, 200, generator=generator)
    positive = torch.rand(3, 200, generator=generator) < 0.05
    num_negatives = positive.sum(1) * 3
    mask = hard_negative_mask(loss, positive, num_negatives)
    for image in range(3):
        assert int(mask[image].sum()) == int(num_negatives[image])
        assert not (mask[image] & positive[image]).any()
        candidates = loss[image].masked_fill(positive[image], -1)
        top = candidates.topk(int(num_negatives[image])).indices
        assert set(top.tolist()) == set(mask[image].nonzero().flatten().tolist())


def _head_outputs(generator: torch.Generator, batch: int, num_priors: int):
    cls_logits = torch.randn(batch, num_priors, NUM_CLASSES + 1, generator=generator, requires_grad=True)
    box_regression = torch.randn(batch, num_priors, 4, generator=generator, requires_grad=True)
    return cls_logits, box_regression


def test_batched_loss_equals_one_image_at_a_time():
    generator = torch.Generator().manual_seed(3)
    priors = _priors()
    targets = _random_targets(generator, [4, 1, 7, 0])
    cls_logits, box_regression = _head_outputs(generator, 4, priors.shape[0])
    criterion = MultiBoxLoss()
    batched = criterion(cls_logits, box_regression, priors, targets)

    # Per image, sum the unnormalized losses, then normalize by the batch's total positives.
    total_pos, sums = 0, {"loss_cls": 0.0, "loss_box": 0.0}
    for image, target in enumerate(targets):
        single = criterion(cls_logits[image : image + 1], box_regression[image : image + 1], priors, [target])
        _, positive = match_default_boxes(priors, *pad_ground_truth([target], CPU)[::2], 0.5)
        count = int(positive.sum())
        for key in sums:
            sums[key] = sums[key] + single[key] * max(count, 1)
        total_pos += count
    for key in sums:
        assert torch.allclose(batched[key], sums[key] / total_pos, rtol=1e-5), key


def test_loss_counts_three_negatives_per_positive():
    generator = torch.Generator().manual_seed(4)
    priors = _priors()
    targets = _random_targets(generator, [3])
    cls_logits, box_regression = _head_outputs(generator, 1, priors.shape[0])
    criterion = MultiBoxLoss(neg_pos_ratio=3.0)
    loss = criterion(cls_logits, box_regression, priors, targets)["loss_cls"]

    gt_boxes, gt_labels, valid = pad_ground_truth(targets, CPU)
    matched, positive = match_default_boxes(priors, gt_boxes, valid, 0.5)
    labels = gt_labels[0, matched[0]].masked_fill(~positive[0], 0)
    ce = torch.nn.functional.cross_entropy(cls_logits[0], labels, reduction="none")
    num_pos = int(positive.sum())
    hardest = ce.detach().masked_fill(positive[0], -1).topk(3 * num_pos).indices
    expected = (ce[positive[0]].sum() + ce[hardest].sum()) / num_pos
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_images_without_ground_truth_train_on_mined_negatives_only():
    generator = torch.Generator().manual_seed(5)
    priors = _priors()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    cls_logits, box_regression = _head_outputs(generator, 2, priors.shape[0])
    criterion = MultiBoxLoss(empty_image_negatives=10)
    losses = criterion(cls_logits, box_regression, priors, [empty, empty])
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"] > 0
    assert losses["loss_box"] == 0
    ce = torch.nn.functional.cross_entropy(
        cls_logits.transpose(1, 2), torch.zeros(2, priors.shape[0], dtype=torch.long), reduction="none")
    expected = ce.detach().topk(10, dim=1).values.sum()  # no positives: divided by 1
    assert torch.allclose(losses["loss_cls"], expected, rtol=1e-5)
    (losses["loss_cls"] + losses["loss_box"]).backward()
    assert box_regression.grad.abs().sum() == 0 and cls_logits.grad.abs().sum() > 0
