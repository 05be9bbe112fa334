"""Box primitives shared by every detector: the box coder, clipping, and padded ground truth (IoU:
detect/iou.py).

Boxes are absolute xyxy float tensors. All functions work on whole batches.

Box coder: the parametrisation of R-CNN (Girshick et al., 2014), as torchvision's BoxCoder:
    dx = wx (gx - rx) / rw,  dy = wy (gy - ry) / rh,  dw = ww log(gw / rw),  dh = wh log(gh / rh)
on centres and sizes of a box g and its reference r (an anchor, a proposal, a default box). The
weights (wx, wy, ww, wh) are the inverse of the targets' normalization stds: Faster R-CNN's RoI
head uses (10, 10, 5, 5) = 1 / (0.1, 0.1, 0.2, 0.2), the RPN (1, 1, 1, 1); SSD's "variances"
(v0, v1) are the same thing, weights (1 / v0, 1 / v0, 1 / v1, 1 / v1) (`variance_weights`).

Padded ground truth: per-image boxes and labels become [B, G, 4], [B, G] and a validity mask [B, G]
(G >= 1), so that matching and losses run on the whole batch at once.
"""

from __future__ import annotations

import math

import torch
from torch.nn.utils.rnn import pad_sequence

# Decoded log-sizes are clamped so that exp() cannot blow a box up beyond 1000/16 times its reference.
DELTA_CLAMP = math.log(1000.0 / 16)
# Encoded sizes are floored here, so that an empty box gives a finite (if large) target, not -inf.
MIN_ENCODED_SIZE = 1e-6


def variance_weights(variances: tuple[float, float]) -> tuple[float, float, float, float]:
    """SSD's (centre, size) variances -> the coder's weights (wx, wy, ww, wh)."""
    return (1.0 / variances[0], 1.0 / variances[0], 1.0 / variances[1], 1.0 / variances[1])


def _centres_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


def encode(boxes: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Deltas [..., 4] that turn `references` into `boxes` (both xyxy [..., 4], broadcasting).

    Degenerate references give non-finite deltas; callers keep such deltas out of their losses.
    """
    wx, wy, ww, wh = weights
    cx, cy, w, h = _centres_and_sizes(boxes)
    rx, ry, rw, rh = _centres_and_sizes(references)
    w, h = w.clamp(min=MIN_ENCODED_SIZE), h.clamp(min=MIN_ENCODED_SIZE)
    return torch.stack(
        [wx * (cx - rx) / rw, wy * (cy - ry) / rh, ww * torch.log(w / rw), wh * torch.log(h / rh)], dim=-1
    )


def decode(deltas: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Boxes xyxy [..., 4] from `deltas` [..., 4] applied to `references` [..., 4] (broadcasting)."""
    wx, wy, ww, wh = weights
    # Half-precision deltas (autocast) are decoded in the references' precision: pixels need float32.
    dtype = torch.promote_types(deltas.dtype, references.dtype)
    deltas = deltas.to(dtype)
    rx, ry, rw, rh = _centres_and_sizes(references.to(dtype))
    cx = deltas[..., 0] / wx * rw + rx
    cy = deltas[..., 1] / wy * rh + ry
    w = torch.exp((deltas[..., 2] / ww).clamp(max=DELTA_CLAMP)) * rw
    h = torch.exp((deltas[..., 3] / wh).clamp(max=DELTA_CLAMP)) * rh
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def clip_boxes(boxes: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Clip boxes [B, ..., 4] to [0, w_b] x [0, h_b]; heights, widths [B] (one per image)."""
    shape = (-1,) + (1,) * (boxes.dim() - 2)
    max_x = widths.to(boxes.dtype).reshape(shape)
    max_y = heights.to(boxes.dtype).reshape(shape)
    x1 = torch.minimum(boxes[..., 0].clamp(min=0), max_x)
    y1 = torch.minimum(boxes[..., 1].clamp(min=0), max_y)
    x2 = torch.minimum(boxes[..., 2].clamp(min=0), max_x)
    y2 = torch.minimum(boxes[..., 3].clamp(min=0), max_y)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def pad_ground_truth(targets: list[dict], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image `boxes` [N_i, 4] and `labels` [N_i] -> boxes float32 [B, G, 4], labels int64 [B, G],
    valid bool [B, G] on `device`, G = max(N_i, 1); padded entries are zero and invalid."""
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
