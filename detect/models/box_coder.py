"""Box regression targets: boxes <-> deltas relative to reference boxes (anchors or proposals).

The parametrisation of R-CNN (Girshick et al., 2014): dx = wx * (gx - rx) / rw, dy = wy * (gy - ry) / rh,
dw = ww * log(gw / rw), dh = wh * log(gh / rh), on centres and sizes; `weights` (wx, wy, ww, wh) are the
inverse of the target normalisation stds (Faster R-CNN's RoI head: (10, 10, 5, 5) = 1 / (0.1, 0.1, 0.2, 0.2)).
All functions work on any leading shape: boxes and references float [..., 4] xyxy, deltas [..., 4].
"""

from __future__ import annotations

import math

import torch

# Decoded dw, dh are clamped so that exp() cannot blow up a box beyond 1000/16 times its reference.
DELTA_CLAMP = math.log(1000.0 / 16)


def _centres_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


def encode(boxes: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Deltas that turn `references` into `boxes` (degenerate references give non-finite deltas)."""
    wx, wy, ww, wh = weights
    cx, cy, w, h = _centres_and_sizes(boxes)
    rx, ry, rw, rh = _centres_and_sizes(references)
    return torch.stack(
        [wx * (cx - rx) / rw, wy * (cy - ry) / rh, ww * torch.log(w / rw), wh * torch.log(h / rh)], dim=-1
    )


def decode(deltas: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Boxes from `deltas` applied to `references` (broadcasting over leading dims)."""
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
    """Clip boxes [B, ..., 4] to [0, w_b] x [0, h_b]; heights, widths float [B] (one per image)."""
    shape = (-1,) + (1,) * (boxes.dim() - 2)
    max_x = widths.to(boxes.dtype).reshape(shape)
    max_y = heights.to(boxes.dtype).reshape(shape)
    x1 = torch.minimum(boxes[..., 0].clamp(min=0), max_x)
    y1 = torch.minimum(boxes[..., 1].clamp(min=0), max_y)
    x2 = torch.minimum(boxes[..., 2].clamp(min=0), max_x)
    y2 = torch.minimum(boxes[..., 3].clamp(min=0), max_y)
    return torch.stack([x1, y1, x2, y2], dim=-1)
