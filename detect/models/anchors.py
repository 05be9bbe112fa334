"""Anchors for the RPN: `len(sizes) x len(aspect_ratios)` boxes centred on every feature-map location.

    anchors = AnchorGenerator(sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), stride=16)
    anchors(feature_height, feature_width, device) -> float32 [Hf * Wf * A, 4] xyxy, image pixels

Order: row-major over locations, then ratio-major over the A = len(ratios) * len(sizes) cell anchors
(the order the RPN head's outputs are flattened in). The convention is torchvision's AnchorGenerator
(so the two agree exactly): the anchor of location (i, j) is centred on pixel (j * stride, i * stride),
the top-left corner of its cell, and the cell anchors' corners are rounded to integers. An aspect ratio
is height / width; a size is the square root of the anchor's area.
Anchors depend only on the feature-map size, so they are made once per size and device, and cached.

Feature pyramids (FPN): `AnchorGenerator(sizes, ratios, stride=(4, 8, 16, 32, 64))` puts `sizes[l]` on
level l: one size per level (torchvision's `fasterrcnn_resnet50_fpn`), or a list of sizes per level, the
same count on each (`fasterrcnn_mobilenet_v3_large_fpn`: all five sizes on each of its three maps), and

    anchors.pyramid(feature_shapes [(Hl, Wl), ...], device) -> float32 [sum Hl * Wl * A, 4], level-major

As in torchvision, a level's stride is the padded image size (level 0's size x its stride) floor-divided
by the level's size, per axis: the nominal stride, except for a last max-pool level of an odd-sized map.
"""

from __future__ import annotations

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
    def __init__(self, sizes: list[float], aspect_ratios: list[float], stride: int | tuple[int, ...] = 16):
        super().__init__()
        self.sizes = list(sizes)
        self.aspect_ratios = list(aspect_ratios)
        self.stride = stride
        self.is_pyramid = isinstance(stride, (tuple, list))
        self._cache: dict[tuple, torch.Tensor] = {}
        if not self.is_pyramid:
            if any(isinstance(size, (list, tuple)) for size in self.sizes):
                raise ValueError("anchor sizes per level need a feature pyramid; a single map takes a flat list")
            self.base_anchors = cell_anchors(self.sizes, self.aspect_ratios)
            return
        if len(self.sizes) != len(stride):
            raise ValueError(f"a feature pyramid of {len(stride)} levels takes one anchor size per level (or one "
                             f"list of sizes per level), got {len(self.sizes)}")
        level_sizes = [list(size) if isinstance(size, (list, tuple)) else [size] for size in self.sizes]
        if len({len(level) for level in level_sizes}) != 1:
            raise ValueError("every pyramid level needs the same number of anchor sizes (one RPN head serves all)")
        self.level_base_anchors = [cell_anchors(level, self.aspect_ratios) for level in level_sizes]

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location (on every level of a pyramid)."""
        base = self.level_base_anchors[0] if self.is_pyramid else self.base_anchors
        return base.shape[0]

    def pyramid(self, feature_shapes: list[tuple[int, int]], device: torch.device | str) -> torch.Tensor:
        """Anchors of every level, concatenated in level order (see the module docstring)."""
        key = (tuple(tuple(shape) for shape in feature_shapes), str(device))
        if key not in self._cache:
            padded_h, padded_w = (side * self.stride[0] for side in feature_shapes[0])
            self._cache[key] = torch.cat([
                self._grid(h, w, torch.device(device), padded_h // h, padded_w // w, base)
                for (h, w), base in zip(feature_shapes, self.level_base_anchors)
            ])
        return self._cache[key]

    def forward(self, feature_height: int, feature_width: int, device: torch.device | str) -> torch.Tensor:
        key = (feature_height, feature_width, str(device))
        if key not in self._cache:
            self._cache[key] = self._grid(
                feature_height, feature_width, torch.device(device), self.stride, self.stride, self.base_anchors
            )
        return self._cache[key]

    @staticmethod
    def _grid(feature_height: int, feature_width: int, device: torch.device, stride_y: int, stride_x: int,
              base_anchors: torch.Tensor) -> torch.Tensor:
        shift_y = torch.arange(feature_height, dtype=torch.float32, device=device) * stride_y
        shift_x = torch.arange(feature_width, dtype=torch.float32, device=device) * stride_x
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        return (shifts + base_anchors.to(device)[None]).reshape(-1, 4)
