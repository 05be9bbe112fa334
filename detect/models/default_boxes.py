"""SSD's default boxes (Liu et al., 2016, section 2.2); boxes are encoded against them by the
shared coder (boxes.encode / decode with `variance_weights`).

Notation: feature map k of m has size f_k x f_k; its boxes have scale s_k (a fraction of the input
side) and the aspect ratios {1, a_1, 1/a_1, ...} plus one extra square box of scale sqrt(s_k s_{k+1}).
Box centres sit at ((j + 0.5) / f_k, (i + 0.5) / f_k), or at ((j + 0.5) * step_k / size, ...) when
explicit steps are given (as Caffe SSD and torchvision do).

Default boxes are generated in normalized [0, 1] xyxy (clipped to the image), location-major: for
each feature map, for each cell (row i, then column j), the cell's boxes in the order
[s_k 1:1, sqrt(s_k s_{k+1}) 1:1, then for each ratio a: a:1, 1:a]. The SSD head lays out its
predictions in the same order.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def box_scales(
    num_maps: int, min_scale: float, max_scale: float, first_scale: float | None, last_scale: float | None = None
) -> list[float]:
    """The m + 1 scales s_1 .. s_{m+1} for `num_maps` = m feature maps.

    The paper spreads s_k linearly from `min_scale` to `max_scale` over the maps; with `first_scale`
    the first map (conv4_3) gets that scale on its own and the linear spread covers the other m - 1
    (the paper's VOC setting: 0.1, then 0.2 .. 0.9). s_{m+1}, needed only for the last map's extra
    square box, continues the linear spread by one step (as Caffe SSD's 300 / 315 px does), unless
    `last_scale` gives it (torchvision's SSDlite: 1.0).
    """
    spread_count = num_maps - 1 if first_scale is not None else num_maps
    step = (max_scale - min_scale) / (spread_count - 1) if spread_count > 1 else max_scale - min_scale
    spread = [min_scale + step * k for k in range(spread_count)]
    scales = ([first_scale] if first_scale is not None else []) + spread
    return scales + [last_scale if last_scale is not None else scales[-1] + step]


def boxes_per_location(aspect_ratios: list[list[float]]) -> list[int]:
    """How many default boxes each cell of each map has: 2 squares + 2 per extra aspect ratio."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def default_boxes(
    feature_map_sizes: list[tuple[int, int]],
    scales: list[float],
    aspect_ratios: list[list[float]],
    steps: list[float] | None = None,
    image_size: tuple[int, int] | None = None,
    clip: str = "corners",
) -> torch.Tensor:
    """All default boxes, normalized xyxy float32 [A, 4].

    feature_map_sizes: (h, w) of each map; scales: m + 1 values (see box_scales); aspect_ratios: per
    map, the ratios besides 1 (each adds a:1 and 1:a). steps (pixels per cell, one per map) and
    image_size (h, w) place the centres as Caffe SSD does; without them centres are (j + 0.5) / f_k.
    clip: "corners" clips the boxes to [0, 1] (Caffe SSD); "size" clamps their widths and heights to
    [0, 1] and keeps the centres, so edge boxes reach outside the image (torchvision's SSD).
    """
    if not len(feature_map_sizes) == len(aspect_ratios) == len(scales) - 1:
        raise ValueError(
            f"{len(feature_map_sizes)} feature maps need {len(feature_map_sizes)} aspect ratio lists and "
            f"{len(feature_map_sizes) + 1} scales, got {len(aspect_ratios)} and {len(scales)}"
        )
    per_map = []
    for k, (map_h, map_w) in enumerate(feature_map_sizes):
        if steps is not None:
            image_h, image_w = image_size
            step_y, step_x = steps[k] / image_h, steps[k] / image_w
        else:
            step_y, step_x = 1.0 / map_h, 1.0 / map_w
        centre_y = (torch.arange(map_h, dtype=torch.float64) + 0.5) * step_y
        centre_x = (torch.arange(map_w, dtype=torch.float64) + 0.5) * step_x
        grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")
        centres = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 1, 2)  # [cells, 1, 2]
        sizes = torch.tensor(_box_shapes(scales[k], scales[k + 1], aspect_ratios[k]), dtype=torch.float64)
        if clip == "size":
            sizes = sizes.clamp(0.0, 1.0)
        sizes = sizes.unsqueeze(0).expand(centres.shape[0], -1, -1)  # [cells, boxes per cell, 2]
        centres = centres.expand_as(sizes)
        per_map.append(torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1).reshape(-1, 4))
    boxes = torch.cat(per_map)
    return (boxes.clamp_(0.0, 1.0) if clip == "corners" else boxes).float()


def _box_shapes(scale: float, next_scale: float, ratios: list[float]) -> list[tuple[float, float]]:
    """(w, h) of one cell's boxes, normalized: two squares, then a:1 and 1:a for each ratio."""
    shapes = [(scale, scale), (math.sqrt(scale * next_scale),) * 2]
    for ratio in ratios:
        root = math.sqrt(ratio)
        shapes += [(scale * root, scale / root), (scale / root, scale * root)]
    return shapes


@lru_cache(maxsize=16)
def _cached_default_boxes(
    feature_map_sizes: tuple[tuple[int, int], ...],
    scales: tuple[float, ...],
    aspect_ratios: tuple[tuple[float, ...], ...],
    steps: tuple[float, ...] | None,
    image_size: tuple[int, int] | None,
    clip: str,
) -> torch.Tensor:
    return default_boxes(
        list(feature_map_sizes), list(scales), [list(r) for r in aspect_ratios],
        list(steps) if steps is not None else None, image_size, clip,
    )


def cached_default_boxes(feature_map_sizes, scales, aspect_ratios, steps=None, image_size=None,
                         clip: str = "corners") -> torch.Tensor:
    """default_boxes, computed once per distinct set of arguments (CPU tensor: move it, don't edit it)."""
    return _cached_default_boxes(
        tuple(tuple(s) for s in feature_map_sizes), tuple(scales), tuple(tuple(r) for r in aspect_ratios),
        tuple(steps) if steps is not None else None, tuple(image_size) if image_size is not None else None,
        clip,
    )
