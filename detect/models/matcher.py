"""Matching reference boxes (anchors, proposals) to ground truth, and balanced sampling: batched.

Ground truth is padded per image to a common count G with a validity mask (`pad_ground_truth`), so
matching and sampling run on the whole batch at once:

    gt_boxes [B, G, 4], gt_labels [B, G], gt_valid [B, G] bool   (G >= 1; an image may have none valid)
    iou = batched_box_iou(references [B, N, 4], gt_boxes)             -> [B, N, G]
    matched, labels = match(iou, gt_valid, ...)                       -> [B, N] long, [B, N] int8
                      labels: 1 positive, 0 negative, -1 ignored; `matched` indexes G (any value where
                      labels != 1)
    sampled, sampled_valid = sample_balanced(labels, S, fraction)     -> [B, S'] long, [B, S'] bool
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def pad_ground_truth(targets: list[dict], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image `boxes` [N_i, 4] and `labels` [N_i] -> padded [B, G, 4], [B, G], valid [B, G]."""
    per_image_boxes = [_as(t["boxes"], torch.float32, device).reshape(-1, 4) for t in targets]
    per_image_labels = [_as(t["labels"], torch.int64, device).reshape(-1) for t in targets]
    # Shapes are known on the host; validity comes from padding labels with -1, so that nothing is
    # copied from the host (no sync on CUDA).
    count = max([len(boxes) for boxes in per_image_boxes] + [1])
    boxes = torch.zeros(len(targets), count, 4, dtype=torch.float32, device=device)
    labels = torch.full((len(targets), count), -1, dtype=torch.int64, device=device)
    longest = max(len(boxes) for boxes in per_image_boxes)
    if longest > 0:
        boxes[:, :longest] = pad_sequence(per_image_boxes, batch_first=True)
        labels[:, :longest] = pad_sequence(per_image_labels, batch_first=True, padding_value=-1)
    valid = labels >= 0
    return boxes, labels.clamp(min=0), valid


def _as(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype).to(device, non_blocking=True)


def batched_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair within each image: [B, N, 4] x [B, M, 4] -> [B, N, M] (0 for empty unions)."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0)
    top_left = torch.maximum(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    bottom_right = torch.minimum(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def match(
    iou: torch.Tensor,
    gt_valid: torch.Tensor,
    fg_thresh: float,
    bg_thresh_hi: float,
    bg_thresh_lo: float = 0.0,
    best_match_positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label each reference by its best IoU: positive >= fg_thresh, negative in [lo, hi), else ignored.

    `best_match_positive`: also make positive, for each valid ground truth, the references with its
    highest IoU (ties included, if above 0): every object gets at least one anchor (the RPN rule).
    """
    iou = iou.masked_fill(~gt_valid[:, None, :], -1.0)
    best_iou, matched = iou.max(dim=2)
    best_iou = best_iou.clamp(min=0)  # an image without ground truth: IoU 0 with everything
    labels = torch.full_like(matched, IGNORE, dtype=torch.int8)
    labels[(best_iou >= bg_thresh_lo) & (best_iou < bg_thresh_hi)] = NEGATIVE
    labels[best_iou >= fg_thresh] = POSITIVE
    if best_match_positive:
        best_per_gt = iou.max(dim=1, keepdim=True).values  # [B, 1, G]
        is_best = (iou == best_per_gt) & (best_per_gt > 0) & gt_valid[:, None, :]
        labels[is_best.any(dim=2)] = POSITIVE
    return matched, labels


def sample_balanced(
    labels: torch.Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `batch_size_per_image` references per image, at most `positive_fraction` of them positive.

    Random without replacement, for all images at once: each candidate gets a random score and the
    top-k scores of positives (then negatives) win; a per-image count cuts each list. Negatives fill
    what positives leave. Returns indices into N [B, S'] (positives first) and their validity [B, S'],
    with S' = min(batch_size_per_image, N); slots past an image's count are invalid.
    """
    batch, num = labels.shape
    size = min(batch_size_per_image, num)
    is_pos, is_neg = labels == POSITIVE, labels == NEGATIVE
    num_pos = is_pos.sum(dim=1).clamp(max=int(batch_size_per_image * positive_fraction))
    num_neg = is_neg.sum(dim=1).minimum(batch_size_per_image - num_pos)

    max_pos = min(int(batch_size_per_image * positive_fraction), num)
    scores = torch.rand(labels.shape, device=labels.device, generator=generator)
    pos_idx = torch.where(is_pos, scores, -1.0).topk(max_pos, dim=1).indices
    neg_idx = torch.where(is_neg, scores, -1.0).topk(size, dim=1).indices
    pos_valid = torch.arange(pos_idx.shape[1], device=labels.device)[None] < num_pos[:, None]
    neg_valid = torch.arange(size, device=labels.device)[None] < num_neg[:, None]

    indices = torch.cat([pos_idx, neg_idx], dim=1)
    valid = torch.cat([pos_valid, neg_valid], dim=1)
    # Move valid slots to the front (stable: positives stay first), then keep `size` of them.
    order = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices[:, :size]
    return indices.gather(1, order), valid.gather(1, order)
