"""Anchors for the RPN: `len(sizes) x len(aspect_ratios)` boxes centred on every feature-map location.

    anchors = AnchorGenerator(sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), stride=16)
    anchors(feature_height, feature_width, device) -> float32 [Hf * Wf * A, 4] xyxy, image pixels

Order: row-major over locations, then ratio-major over the A = len(ratios) * len(sizes) cell anchors
(the order the RPN head's outputs are flattened in). The convention is torchvision's AnchorGenerator
(so the two agree exactly): the anchor of location (i, j) is centred on pixel (j * stride, i * stride),
the top-left corner of its cell, and the cell anchors' corners are rounded to integers. An aspect ratio
is height / width; a size is the square root of the anchor's area.
Anchors depend only on the feature-map size, so they are made once per size and device, and cached.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cell_anchors(sizes: list[float], aspect_ratios: list[float]) -> torch.Tensor:
    """The A anchors around (0, 0): float32 [len(ratios) * len(sizes), 4], ratio-major."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    height_factor = torch.sqrt(ratios)
    widths = (scales[None, :] / height_factor[:, None]).reshape(-1)
    heights = (scales[None, :] * height_factor[:, None]).reshape(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    def __init__(self, sizes: list[float], aspect_ratios: list[float], stride: int = 16):
        super().__init__()
        self.sizes = list(sizes)
        self.aspect_ratios = list(aspect_ratios)
        self.stride = stride
        self.base_anchors = cell_anchors(self.sizes, self.aspect_ratios)
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location."""
        return len(self.sizes) * len(self.aspect_ratios)

    def forward(self, feature_height: int, feature_width: int, device: torch.device | str) -> torch.Tensor:
        key = (feature_height, feature_width, str(device))
        if key not in self._cache:
            self._cache[key] = self._grid(feature_height, feature_width, torch.device(device))
        return self._cache[key]

    def _grid(self, feature_height: int, feature_width: int, device: torch.device) -> torch.Tensor:
        shift_y = torch.arange(feature_height, dtype=torch.float32, device=device) * self.stride
        shift_x = torch.arange(feature_width, dtype=torch.float32, device=device) * self.stride
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        return (shifts + self.base_anchors.to(device)[None]).reshape(-1, 4)


def max_anchor_extent(sizes: list[float], aspect_ratios: list[float]) -> float:
    """The longest side any anchor can have (for sanity checks against the image size)."""
    return max(sizes) * math.sqrt(max(max(aspect_ratios), 1 / min(aspect_ratios)))
