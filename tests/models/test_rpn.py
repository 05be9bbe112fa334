"""RPN: head layout, batched proposals equal a per-image torchvision computation, batched loss equals a
one-image-at-a-time loss on the same samples, images without ground truth or proposals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from detect.models.anchors import AnchorGenerator
from detect.models.boxes import pad_ground_truth
from detect.models.matcher import POSITIVE, sample_balanced
from detect.models.rpn import RegionProposalNetwork, RPNHead, rpn_losses, select_proposals


def _rpn(**kwargs):
    torch.manual_seed(0)
    anchors = AnchorGenerator([32.0, 64.0], [0.5, 1.0, 2.0], stride=16)
    return RegionProposalNetwork(anchors, RPNHead(8, 8, anchors.num_anchors), **kwargs)


def test_head_output_follows_anchor_order():
    head = RPNHead(4, 4, 3)
    features = torch.randn(2, 4, 5, 6)
    objectness, deltas = head(features)
    assert objectness.shape == (2, 5 * 6 * 3) and deltas.shape == (2, 5 * 6 * 3, 4)
    raw = head.objectness(F.relu(head.conv(features)))  # [B, A, H, W]
    # Location (i=1, j=2), anchor 2 sits at flat index (1 * 6 + 2) * 3 + 2.
    torch.testing.assert_close(objectness[:, (1 * 6 + 2) * 3 + 2], raw[:, 2, 1, 2])


@pytest.mark.parametrize("score_threshold", [0.0, 0.9])
def test_batched_proposals_equal_per_image_torchvision(score_threshold):
    generator = torch.Generator().manual_seed(1)
    anchor_generator = AnchorGenerator([32.0, 64.0], [0.5, 1.0, 2.0])
    anchors = anchor_generator(6, 8, "cpu")
    objectness = torch.randn(3, len(anchors), generator=generator)
    deltas = torch.randn(3, len(anchors), 4, generator=generator) * 0.5
    image_sizes = torch.tensor([[96, 128], [80, 100], [64, 128]])
    proposals, valid = select_proposals(anchors, objectness, deltas, image_sizes, 200, 50, 0.7, 4.0, 128,
                                        score_threshold=score_threshold)
    assert proposals.shape == (3, 50, 4)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    for i in range(3):
        scores, index = objectness[i].topk(200)
        boxes = coder.decode_single(deltas[i, index], anchors[index])
        boxes = clip_boxes_to_image(boxes, tuple(image_sizes[i].tolist()))
        keep = remove_small_boxes(boxes, 4.0)
        boxes, scores = boxes[keep], scores[keep]
        keep = scores.sigmoid() >= score_threshold  # torchvision's RPN thresholds probabilities
        boxes, scores = boxes[keep], scores[keep]
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), 0.7)[:50]
        assert valid[i].sum() == len(keep)
        assert valid[i].tolist() == sorted(valid[i].tolist(), reverse=True)
        torch.testing.assert_close(proposals[i][valid[i]], boxes[keep])
    assert (valid.sum(dim=1) < 50).any() == (score_threshold > 0)  # the threshold, where set, leaves fewer


def test_an_image_left_without_proposals():
    anchors = AnchorGenerator([32.0], [1.0])(4, 4, "cpu")
    objectness = torch.randn(2, len(anchors))
    deltas = torch.zeros(2, len(anchors), 4)
    deltas[1, :, 2:] = -10.0  # every box of image 1 shrinks below the minimum size
    proposals, valid = select_proposals(
        anchors, objectness, deltas, torch.tensor([[64, 64], [64, 64]]), 100, 20, 0.7, 1.0, 64)
    assert valid[0].any() and not valid[1].any()


def _reference_rpn_loss(objectness, deltas, anchors, per_image_gt, sampled, sampled_valid):
    """One image at a time, with torchvision's box coder and plain per-image IoU."""
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    bce_sum, box_sum, count = 0.0, 0.0, 0
    for i, gt in enumerate(per_image_gt):
        index = sampled[i][sampled_valid[i]]
        if len(gt):
            iou = box_iou(anchors, gt)
            best_iou, best_gt = iou.max(dim=1)
            best_per_gt = iou.max(dim=0).values
            positive = (best_iou >= 0.7) | ((iou == best_per_gt[None]) & (best_per_gt[None] > 0)).any(dim=1)
        else:
            positive = torch.zeros(len(anchors), dtype=torch.bool)
            best_gt = torch.zeros(len(anchors), dtype=torch.int64)
        target = positive[index].float()
        bce_sum = bce_sum + F.binary_cross_entropy_with_logits(objectness[i, index], target, reduction="sum")
        pos = index[positive[index]]
        if len(pos):
            regression = coder.encode_single(gt[best_gt[pos]], anchors[pos])
            box_sum = box_sum + F.smooth_l1_loss(deltas[i, pos], regression, beta=1 / 9, reduction="sum")
        count += len(index)
    return bce_sum / count, box_sum / count


def test_batched_loss_equals_one_image_at_a_time():
    generator = torch.Generator().manual_seed(2)
    rpn = _rpn(batch_size_per_image=32)
    anchors = rpn.anchor_generator(5, 6, "cpu")
    per_image_gt = [
        torch.tensor([[10.0, 10.0, 50.0, 40.0], [40.0, 20.0, 90.0, 75.0]]),
        torch.zeros(0, 4),
        torch.tensor([[0.0, 30.0, 30.0, 60.0]]),
    ]
    targets = [{"boxes": gt, "labels": torch.ones(len(gt), dtype=torch.int64)} for gt in per_image_gt]
    gt_boxes, _, gt_valid = pad_ground_truth(targets, torch.device("cpu"))
    objectness = torch.randn(3, len(anchors), generator=generator)
    deltas = torch.randn(3, len(anchors), 4, generator=generator) * 0.3
    matched, labels = rpn.match_anchors(anchors, gt_boxes, gt_valid)
    sampled, sampled_valid = sample_balanced(labels, 32, 0.5, generator=generator)
    assert (labels.gather(1, sampled)[sampled_valid] == POSITIVE).sum() > 0
    losses = rpn_losses(objectness, deltas, anchors, gt_boxes, matched, labels, sampled, sampled_valid)
    expected_objectness, expected_box = _reference_rpn_loss(
        objectness, deltas, anchors, per_image_gt, sampled, sampled_valid)
    torch.testing.assert_close(losses["loss_rpn_objectness"], expected_objectness)
    torch.testing.assert_close(losses["loss_rpn_box"], expected_box)


def test_forward_without_ground_truth_anywhere_and_gradients_flow():
    rpn = _rpn(batch_size_per_image=16, pre_nms_top_n=(100, 50), post_nms_top_n=(20, 10)).train()
    features = torch.randn(2, 8, 4, 5, requires_grad=True)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    gt_boxes, _, gt_valid = pad_ground_truth(empty, torch.device("cpu"))
    proposals, valid, losses = rpn(features, torch.tensor([[64, 80], [64, 80]]), gt_boxes, gt_valid)
    assert proposals.shape == (2, 20, 4) and not proposals.requires_grad
    assert losses["loss_rpn_box"] == 0 and torch.isfinite(losses["loss_rpn_objectness"])
    sum(losses.values()).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    rpn.eval()
    assert rpn(features, torch.tensor([[64, 80], [64, 80]]))[0].shape == (2, 10, 4)
