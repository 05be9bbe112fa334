"""Non-maximum suppression for a whole batch in one call: groups (images, or image x class) are kept
apart by shifting each group's boxes to its own region of the plane, so one `torchvision.ops.nms`
call does the work of a loop over images and classes (torchvision's `batched_nms` falls back to such
a loop for large inputs).
"""

from __future__ import annotations

import torch
from torchvision.ops import nms


def grouped_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thresh: float, max_coordinate: float
) -> torch.Tensor:
    """Indices kept by NMS within each group, by descending score.

    boxes float [M, 4] with coordinates in [0, max_coordinate]; scores [M]; groups int64 [M].
    """
    offsets = groups.to(boxes.dtype) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_thresh)


def nms_mask(
    boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, iou_thresh: float, max_coordinate: float
) -> torch.Tensor:
    """NMS per image on fixed-size candidate lists: boxes [B, K, 4], scores [B, K], valid [B, K] -> kept
    [B, K] bool. Invalid candidates neither survive nor suppress (they become empty boxes)."""
    batch, count = scores.shape
    flat_boxes = torch.where(valid[..., None], boxes, torch.zeros_like(boxes)).reshape(-1, 4)
    flat_scores = scores.masked_fill(~valid, float("-inf")).reshape(-1)
    groups = torch.arange(batch, device=boxes.device).repeat_interleave(count)
    keep = grouped_nms(flat_boxes, flat_scores, groups, iou_thresh, max_coordinate)
    kept = torch.zeros(batch * count, dtype=torch.bool, device=boxes.device)
    kept[keep] = True
    return kept.reshape(batch, count) & valid
