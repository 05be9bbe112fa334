"""RoI heads: pooling equals torchvision.ops per image, sampled targets, batched loss equals one image at
a time, postprocess (limits, order, original pixels, equal to a per-image torchvision reference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, box_iou, roi_align, roi_pool

from detect.detections.padded import split_detections
from detect.models.boxes import decode, pad_ground_truth
from detect.models.roi_heads import (
    RoIHeads,
    fast_rcnn_losses,
    pool_rois,
    pool_rois_pyramid,
    postprocess_detections,
    pyramid_levels,
)

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _rois(batch, count, generator, extent=120.0):
    xy = torch.rand(batch, count, 2, generator=generator) * extent
    wh = torch.rand(batch, count, 2, generator=generator) * 60 + 4
    return torch.cat([xy, xy + wh], dim=-1)


@pytest.mark.parametrize("method", ["roi_pool", "roi_align"])
def test_pooling_equals_torchvision_per_image(method):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, 10, 12, generator=generator)
    rois = _rois(3, 5, generator)
    pooled = pool_rois(features, rois, method, 7, 16)
    assert pooled.shape == (15, 4, 7, 7)
    for i in range(3):
        if method == "roi_pool":
            expected = roi_pool(features[i : i + 1], [rois[i]], 7, spatial_scale=1 / 16)
        else:
            expected = roi_align(features[i : i + 1], [rois[i]], 7, spatial_scale=1 / 16, sampling_ratio=2)
        torch.testing.assert_close(pooled[i * 5 : (i + 1) * 5], expected)


def _heads(num_classes=3, **kwargs):
    torch.manual_seed(0)
    box_head = nn.Sequential(nn.Flatten(1), nn.Linear(4 * 7 * 7, 16), nn.ReLU())
    return RoIHeads(box_head, 16, num_classes, "roi_align", 7, 16, **kwargs)


def test_training_samples_respect_iou_rules_and_encode_their_ground_truth():
    generator = torch.Generator().manual_seed(1)
    heads = _heads(batch_size_per_image=32, positive_fraction=0.25)
    per_image_gt = [torch.tensor([[10.0, 10.0, 60.0, 50.0], [70.0, 60.0, 120.0, 110.0]]), torch.zeros(0, 4)]
    targets = [{"boxes": gt, "labels": torch.tensor([2, 3][: len(gt)])} for gt in per_image_gt]
    gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets, torch.device("cpu"))
    proposals = _rois(2, 40, generator)
    proposal_valid = torch.ones(2, 40, dtype=torch.bool)
    proposal_valid[:, 30:] = False
    rois, roi_valid, roi_labels, roi_targets = heads.select_training_samples(
        proposals, proposal_valid, gt_boxes, gt_labels, gt_valid
    )
    assert rois.shape == (2, 32, 4)
    assert ((roi_labels > 0) & roi_valid).sum(dim=1).le(8).all()  # at most 25% foreground
    assert ((roi_labels > 0) & roi_valid)[0].sum() >= 2  # the ground truth itself is a candidate
    assert not (roi_labels[1] > 0).any()  # no ground truth: background only
    for i, gt in enumerate(per_image_gt):
        chosen = rois[i][roi_valid[i]]
        labels = roi_labels[i][roi_valid[i]]
        iou = box_iou(chosen, gt).max(dim=1).values if len(gt) else torch.zeros(len(chosen))
        assert (iou[labels > 0] >= 0.5).all() and (iou[labels == 0] < 0.5).all()
        foreground = labels > 0
        if foreground.any():
            decoded = decode(roi_targets[i][roi_valid[i]][foreground], chosen[foreground], WEIGHTS)
            best = box_iou(chosen[foreground], gt).argmax(dim=1)
            torch.testing.assert_close(decoded, gt[best], rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(gt_labels[i][best], labels[foreground])
    # Invalid (padding) proposals are never sampled: every valid RoI is a valid proposal or a ground truth.
    invalid_boxes = proposals[:, 30:]
    for i in range(2):
        assert not (rois[i][roi_valid[i]][:, None] == invalid_boxes[i][None]).all(-1).any()


def test_batched_loss_equals_one_image_at_a_time():
    generator = torch.Generator().manual_seed(2)
    batch, samples, classes = 3, 12, 4
    class_logits = torch.randn(batch, samples, classes + 1, generator=generator)
    box_deltas = torch.randn(batch, samples, classes, 4, generator=generator)
    roi_labels = torch.randint(0, classes + 1, (batch, samples), generator=generator)
    roi_targets = torch.randn(batch, samples, 4, generator=generator) * (roi_labels > 0)[..., None]
    roi_valid = torch.ones(batch, samples, dtype=torch.bool)
    roi_valid[1, 7:] = False
    roi_valid[2] = False  # an image that sampled nothing
    losses = fast_rcnn_losses(class_logits, box_deltas, roi_valid, roi_labels, roi_targets)
    ce_sum, box_sum, count = 0.0, 0.0, 0
    for i in range(batch):
        n = int(roi_valid[i].sum())
        labels = roi_labels[i, :n]
        ce_sum = ce_sum + F.cross_entropy(class_logits[i, :n], labels, reduction="sum")
        for j in range(n):
            if labels[j] > 0:
                box_sum = box_sum + F.smooth_l1_loss(
                    box_deltas[i, j, labels[j] - 1], roi_targets[i, j], reduction="sum")
        count += n
    torch.testing.assert_close(losses["loss_classifier"], ce_sum / count)
    torch.testing.assert_close(losses["loss_box_reg"], box_sum / count)


def test_training_with_empty_ground_truth_and_no_proposals():
    heads = _heads(batch_size_per_image=16).train()
    features = torch.randn(2, 4, 8, 8, requires_grad=True)
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets, torch.device("cpu"))
    proposals = _rois(2, 10, torch.Generator().manual_seed(3))
    no_proposals = torch.zeros(2, 10, dtype=torch.bool)  # both images left without proposals
    losses = heads(features, proposals, no_proposals, gt_boxes, gt_labels, gt_valid)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(features.grad).all()


def _reference_postprocess(outputs, image_sizes, scales, score_threshold, nms_thresh, limit):
    coder = BoxCoder(WEIGHTS)
    results = []
    for i in range(len(image_sizes)):
        valid = outputs["roi_valid"][i]
        rois, logits = outputs["rois"][i][valid], outputs["class_logits"][i][valid]
        deltas = outputs["box_deltas"][i][valid]
        classes = deltas.shape[1]
        boxes = coder.decode_single(deltas.reshape(len(rois), classes * 4), rois).reshape(len(rois), classes, 4)
        height, width = image_sizes[i].tolist()
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, width)
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, height)
        scores = F.softmax(logits, -1)[:, 1:]
        labels = torch.arange(1, classes + 1).expand(len(rois), -1)
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
        keep = scores > score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:limit]
        sx, sy = scales[i].tolist()
        results.append((boxes[keep] / torch.tensor([sx, sy, sx, sy]), scores[keep], labels[keep]))
    return results


def test_postprocess_limits_sorts_and_maps_to_original_pixels():
    generator = torch.Generator().manual_seed(4)
    batch, count, classes = 3, 30, 4
    outputs = {
        "rois": _rois(batch, count, generator, extent=80.0),
        "roi_valid": torch.ones(batch, count, dtype=torch.bool),
        "class_logits": torch.randn(batch, count, classes + 1, generator=generator) * 3,
        "box_deltas": torch.randn(batch, count, classes, 4, generator=generator) * 0.5,
    }
    outputs["roi_valid"][1, 10:] = False
    outputs["roi_valid"][2] = False  # an image left without proposals
    image_sizes = torch.tensor([[100, 120], [90, 100], [100, 100]])
    scales = torch.tensor([[0.5, 0.5], [2.0, 1.5], [1.0, 1.0]])
    detections = split_detections(postprocess_detections(outputs, image_sizes, scales, WEIGHTS, 0.05, 0.3, 15))
    expected = _reference_postprocess(outputs, image_sizes, scales, 0.05, 0.3, 15)
    assert len(detections) == 3 and len(detections[2]["boxes"]) == 0
    assert len(detections[0]["boxes"]) == 15  # capped at the maximum
    for i, found in enumerate(detections):
        assert (found["scores"][1:] <= found["scores"][:-1]).all()
        assert found["labels"].dtype == torch.int64 and ((found["labels"] >= 1) & (found["labels"] <= classes)).all()
        orig_h = image_sizes[i, 0] / scales[i, 1]
        orig_w = image_sizes[i, 1] / scales[i, 0]
        assert (found["boxes"][:, 2] <= orig_w + 1e-3).all() and (found["boxes"][:, 3] <= orig_h + 1e-3).all()
        boxes, scores, labels = expected[i]
        torch.testing.assert_close(found["scores"], scores)
        torch.testing.assert_close(found["labels"], labels)
        torch.testing.assert_close(found["boxes"], boxes, rtol=1e-4, atol=1e-3)


def test_pyramid_levels_follow_the_fpn_paper_like_torchvision():
    from torchvision.ops.poolers import LevelMapper

    sides = torch.tensor([8.0, 111.9, 112.0, 223.9, 224.0, 447.0, 448.0, 900.0, 2000.0])
    rois = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    levels = pyramid_levels(rois, (4, 8, 16, 32))
    assert levels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3]  # 112 px: P3; 224 px: P4; 448 px and up: P5
    assert torch.equal(levels, LevelMapper(2, 5)([rois]))


def test_pyramid_pooling_equals_torchvisions_multiscale_roi_align():
    from torchvision.ops import MultiScaleRoIAlign

    generator = torch.Generator().manual_seed(0)
    strides = (4, 8, 16, 32)
    features = [torch.randn(2, 5, 128 // s, 160 // s, generator=generator) for s in strides]
    corners = torch.rand(2, 30, 2, generator=generator) * torch.tensor([100.0, 80.0])
    sides = torch.rand(2, 30, 2, generator=generator) ** 2 * torch.tensor([400.0, 300.0]) + 2
    rois = torch.cat([corners, corners + sides], dim=-1)
    ours = pool_rois_pyramid(features, rois, 7, strides)
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=2)
    expected = pooler({str(i): f for i, f in enumerate(features)}, list(rois), [(128, 160), (128, 160)])
    assert ours.shape == (60, 5, 7, 7)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=2e-5)


def test_head_runs_on_valid_slots_only_with_unchanged_losses_and_detections(monkeypatch):
    """On the CPU the head sees as many slots as the fullest image has valid RoIs; the losses and the
    detections are those of all slots (where invalid ones count for nothing)."""
    import detect.models.roi_heads as roi_heads_module

    heads = _heads(batch_size_per_image=64)
    seen = []
    heads.box_head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    features = torch.randn(2, 4, 8, 8)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([2])}]
    gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets, torch.device("cpu"))
    proposals = _rois(2, 40, torch.Generator().manual_seed(5))
    proposal_valid = torch.ones(2, 40, dtype=torch.bool)
    proposal_valid[0, 25:], proposal_valid[1, 10:] = False, False  # valid proposals come first

    def run():
        torch.manual_seed(0)  # the same samples
        losses = heads(features, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid)
        outputs = heads.eval()(features, proposals, proposal_valid)
        heads.train()
        return losses, outputs

    losses, outputs = run()
    assert seen == [2 * 26, 2 * 25]  # image 0: 25 proposals + its ground truth; inference: its 25 proposals
    monkeypatch.setattr(roi_heads_module, "valid_slots_only", lambda valid, *tensors: tensors)
    all_losses, all_outputs = run()
    assert seen[2:] == [2 * 41, 2 * 40]  # every slot: 40 proposals and one ground truth
    for key, value in losses.items():
        torch.testing.assert_close(value, all_losses[key])
    sizes, scales = torch.tensor([[128, 128], [128, 128]]), torch.ones(2, 2)
    found = split_detections(heads.postprocess(outputs, sizes, scales))
    expected = split_detections(heads.postprocess(all_outputs, sizes, scales))
    for image, reference in zip(found, expected):
        assert len(reference["scores"]) > 5
        for key in image:
            torch.testing.assert_close(image[key], reference[key])
