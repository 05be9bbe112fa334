"""The batched SSD postprocess against per-class loops over torchvision.ops.nms, and torchvision's SSD."""

from __future__ import annotations

import torch
from torchvision.ops import clip_boxes_to_image, nms

from detect.detections.padded import split_detections
from detect.models.boxes import decode, variance_weights
from detect.models.default_boxes import box_scales, default_boxes
from detect.models.ssd_postprocess import postprocess_detections

NUM_CLASSES = 4
SIZE = 128


def _priors() -> torch.Tensor:
    maps = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    ratios = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]
    return default_boxes(maps, box_scales(5, 0.2, 0.9, 0.1), ratios) * SIZE


def _head_outputs(seed: int, batch: int, num_priors: int):
    generator = torch.Generator().manual_seed(seed)
    # Peaked logits so that scores spread over 0.01 .. 1 (some classes are pruned by the threshold).
    cls_logits = torch.randn(batch, num_priors, NUM_CLASSES + 1, generator=generator) * 3
    box_regression = torch.randn(batch, num_priors, 4, generator=generator) * 0.5
    return cls_logits, box_regression


def _reference(cls_logits, box_regression, priors, image_sizes, scales, score_threshold, top_k, nms_thresh, keep):
    """One image and one class at a time, with torchvision.ops.nms."""
    results = []
    for image in range(cls_logits.shape[0]):
        scores = cls_logits[image].softmax(-1)
        height, width = image_sizes[image].tolist()
        boxes = decode(box_regression[image], priors, variance_weights((0.1, 0.2)))
        boxes = clip_boxes_to_image(boxes, (height, width))
        all_boxes, all_scores, all_labels = [], [], []
        for label in range(1, NUM_CLASSES + 1):
            score, index = scores[:, label].topk(min(top_k, len(priors)))
            above = score > score_threshold
            score, index = score[above], index[above]
            kept = nms(boxes[index], score, nms_thresh)
            all_boxes.append(boxes[index][kept])
            all_scores.append(score[kept])
            all_labels.append(torch.full((len(kept),), label))
        scores_cat = torch.cat(all_scores)
        order = scores_cat.argsort(descending=True)[:keep]
        boxes_out = torch.cat(all_boxes)[order] / scales[image].repeat(2)
        results.append({"boxes": boxes_out, "scores": scores_cat[order], "labels": torch.cat(all_labels)[order]})
    return results


def _assert_same(padded: dict, reference: list[dict]) -> None:
    ours = split_detections(padded)
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        assert mine["scores"].shape == theirs["scores"].shape
        assert torch.allclose(mine["scores"], theirs["scores"], atol=1e-6)
        assert torch.equal(mine["labels"], theirs["labels"])
        assert torch.allclose(mine["boxes"], theirs["boxes"], atol=1e-4)


def test_postprocess_equals_a_per_class_loop_over_torchvision_nms():
    priors = _priors()
    cls_logits, box_regression = _head_outputs(1, 3, priors.shape[0])
    image_sizes = torch.tensor([[128, 128], [128, 128], [128, 128]])
    scales = torch.tensor([[1.0, 1.0], [0.5, 0.25], [2.0, 1.6]])
    for score_threshold, top_k, nms_thresh, keep in [(0.01, 200, 0.45, 200), (0.3, 50, 0.3, 40)]:
        ours = postprocess_detections(
            cls_logits, box_regression, priors, image_sizes, scales, score_threshold, top_k, nms_thresh, keep
        )
        reference = _reference(
            cls_logits, box_regression, priors, image_sizes, scales, score_threshold, top_k, nms_thresh, keep)
        assert sum(len(r["scores"]) for r in reference) > 0
        _assert_same(ours, reference)


def test_postprocess_clips_to_the_valid_region_and_handles_nothing_above_threshold():
    priors = _priors()
    cls_logits, box_regression = _head_outputs(2, 2, priors.shape[0])
    image_sizes = torch.tensor([[100, 60], [128, 128]])
    padded = postprocess_detections(cls_logits, box_regression * 4, priors, image_sizes, torch.ones(2, 2))
    ours = split_detections(padded)
    num = padded["num"]  # slots past each image's count are zero
    assert not padded["scores"][0, num[0]:].any() and not padded["labels"][0, num[0]:].any()
    assert (ours[0]["boxes"][:, 0::2] <= 60).all() and (ours[0]["boxes"][:, 1::2] <= 100).all()
    assert (ours[0]["boxes"] >= 0).all()
    assert (ours[0]["scores"][1:] <= ours[0]["scores"][:-1]).all()
    background = torch.zeros_like(cls_logits)
    background[..., 0] = 20.0
    nothing = postprocess_detections(background, box_regression, priors, image_sizes, torch.ones(2, 2))
    assert nothing["num"].tolist() == [0, 0] and not nothing["boxes"].any()
    nothing = split_detections(nothing)
    assert [len(d["boxes"]) for d in nothing] == [0, 0]
    assert nothing[0]["boxes"].shape == (0, 4) and nothing[0]["labels"].dtype == torch.int64


def test_postprocess_equals_torchvision_ssd_postprocess():
    from benchmarks.peers import torchvision_ssd300
    from detect.config import SSDConfig

    peer = torchvision_ssd300(NUM_CLASSES, SSDConfig(top_k_per_class=100, detections_per_img=150))
    priors = _priors()
    cls_logits, box_regression = _head_outputs(3, 2, priors.shape[0])
    image_sizes = torch.tensor([[128, 128], [96, 112]])
    theirs = peer.postprocess_detections(
        {"cls_logits": cls_logits, "bbox_regression": box_regression}, [priors, priors], [(128, 128), (96, 112)]
    )
    ours = postprocess_detections(
        cls_logits, box_regression, priors, image_sizes, torch.ones(2, 2), 0.01, 100, 0.45, 150
    )
    _assert_same(ours, theirs)
