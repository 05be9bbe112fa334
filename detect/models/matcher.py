"""Matching reference boxes (anchors, proposals, default boxes) to ground truth, and balanced
sampling: batched, for every detector.

Ground truth is padded per image to a common count G with a validity mask (boxes.pad_ground_truth),
so matching and sampling run on the whole batch at once:

    gt_boxes [B, G, 4], gt_labels [B, G], gt_valid [B, G] bool   (G >= 1; an image may have none valid)
    iou = box_iou(references [B, N, 4], gt_boxes)                     -> [B, N, G]
    matched, labels = match(iou, gt_valid, ...)                       -> [B, N] long, [B, N] int8
                      labels: 1 positive, 0 negative, -1 ignored; `matched` indexes G (any value where
                      labels != 1)
    matched, labels = claim_best_references(iou, gt_valid, matched, labels)   (SSD's rule, see there)
    sampled, sampled_valid = sample_balanced(labels, S, fraction)     -> [B, S'] long, [B, S'] bool

The RPN matches with `best_match_positive`, the RoI heads without, SSD with claim_best_references.
"""

from __future__ import annotations

import torch

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


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
    is_positive = best_iou >= fg_thresh  # -1 without ground truth: never positive, even at threshold 0
    best_iou = best_iou.clamp(min=0)  # an image without ground truth: IoU 0 with everything
    # masked_fill, not boolean-index assignment: the latter runs nonzero(), a host sync on CUDA.
    labels = torch.full_like(matched, IGNORE, dtype=torch.int8)
    labels = labels.masked_fill((best_iou >= bg_thresh_lo) & (best_iou < bg_thresh_hi), NEGATIVE)
    if best_match_positive:
        best_per_gt = iou.max(dim=1, keepdim=True).values  # [B, 1, G]
        is_best = (iou == best_per_gt) & (best_per_gt > 0) & gt_valid[:, None, :]
        is_positive = is_positive | is_best.any(dim=2)
    return matched, labels.masked_fill(is_positive, POSITIVE)


def claim_best_references(
    iou: torch.Tensor, gt_valid: torch.Tensor, matched: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each valid ground truth claims its highest-IoU reference, whatever the IoU: that reference
    becomes positive and matched to it (SSD's rule: every object has at least one positive).

    iou [B, N, G]; matched [B, N], labels [B, N] as `match` returns them. Where several ground
    truths claim one reference, one of them has it. Returns the updated (matched, labels).
    """
    batch, num, num_gt = iou.shape
    # Padding writes into a spare column N that is dropped, which keeps the scatter free of masks
    # with data-dependent sizes.
    best = iou.argmax(dim=1).masked_fill(~gt_valid, num)  # [B, G]
    gt_index = torch.arange(num_gt, device=iou.device).expand(batch, -1)
    spare = torch.zeros(batch, 1, dtype=matched.dtype, device=iou.device)
    matched = torch.cat([matched, spare], dim=1).scatter(1, best, gt_index)[:, :num]
    claimed = torch.zeros(batch, num + 1, dtype=torch.bool, device=iou.device).scatter(1, best, True)[:, :num]
    return matched, labels.masked_fill(claimed, POSITIVE)


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
