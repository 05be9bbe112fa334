"""RoIAlign (He et al., 2017) for RoIs batched per image, as one weighted row gather.

    roi_align_batched(features, rois [B, R, 4] image pixels, output_size, strides, sampling_ratio,
                      levels [B, R] or None) -> [B * R, C, s, s] (image-major order)

`features` is one map [B, C, H, W] or a pyramid (a list of them, one stride each, with `levels`
saying which map each RoI pools from).

The numbers are those of torchvision.ops.roi_align(aligned=False) with a fixed sampling ratio (tested
to 1e-5, values and gradients). Why our own: on a CPU torchvision's backward adds every sample into
the feature gradient one by one on one thread; on the Faster R-CNN main job it took 42 % of a training
step. Here every output bin is a weighted sum of at most 4 * k^2 feature-map pixels (k samples per bin
side, 4 bilinear neighbours each), so the whole operation is one `embedding_bag` over the pixels as rows
of a table: vectorised over channels and a fifth of torchvision's time forward and backward together
(docs/benchmarks.md, CPU fast paths). A pyramid is one gather as
well: its maps' rows are stacked into one table, with no per-level loop or host sync.

torchvision's operator is still used on CUDA (its kernel is fast there), when tracing for ONNX (which
has a RoiAlign operator and no cheap embedding_bag) and for adaptive sampling ratios (`<= 0`: the
sample count then differs per RoI).

The sampling, as torchvision's: each of the s x s bins of a RoI averages k x k bilinear samples at the
centres of a regular sub-grid; a sample within one pixel outside the map is clamped to its border, one
further out counts as zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from detect.models.tracing import is_exporting


def roi_align_batched(features: torch.Tensor | Sequence[torch.Tensor], rois: torch.Tensor, output_size: int,
                      strides: int | Sequence[int], sampling_ratio: int = 2,
                      levels: torch.Tensor | None = None) -> torch.Tensor:
    """RoIAlign of every image's RoIs on its own map (see the module docstring).

    features: [B, C, H, W], or a list of such maps with one stride each; rois [B, R, 4] (x1, y1, x2,
    y2) in image pixels; levels [B, R]: the map index of each RoI (pyramids only).
    Returns [B * R, C, s, s] with s = output_size."""
    maps = [features] if isinstance(features, torch.Tensor) else list(features)
    strides = [strides] if isinstance(strides, int) else list(strides)
    if levels is None:
        levels = torch.zeros(rois.shape[:2], dtype=torch.int64, device=rois.device)
    if uses_torchvision(maps[0], sampling_ratio):
        return torchvision_roi_align(maps, rois, output_size, strides, sampling_ratio, levels)
    table, level_base, level_height, level_width = pixel_table(maps)
    batch, count = rois.shape[:2]
    scales = rois.new_tensor([1.0 / stride for stride in strides])[levels]  # [B, R]
    heights, widths = level_height[levels], level_width[levels]
    scaled = rois * scales[..., None]
    # torchvision's RoIAlign (aligned=False) makes every RoI at least one feature pixel wide and high.
    lengths = (scaled[..., 2:] - scaled[..., :2]).clamp(min=1.0)
    y_index, y_weight = axis_taps(scaled[..., 1], lengths[..., 1], heights, output_size, sampling_ratio)
    x_index, x_weight = axis_taps(scaled[..., 0], lengths[..., 0], widths, output_size, sampling_ratio)
    # Rows of pixel (y, x) of image b on the RoI's level: base + (b * H + y) * W + x.
    image = torch.arange(batch, device=rois.device)[:, None].expand(batch, count)
    first_row = (level_base[levels] + image * heights * widths)[:, :, None, None, None, None]
    rows = first_row + y_index[:, :, :, :, None, None] * widths[:, :, None, None, None, None] \
        + x_index[:, :, None, None, :, :]  # [B, R, s, taps, s, taps]
    weights = y_weight[:, :, :, :, None, None] * x_weight[:, :, None, None, :, :]
    taps = rows.shape[3] * rows.shape[5]
    rows = rows.permute(0, 1, 2, 4, 3, 5).reshape(-1, taps)
    weights = weights.permute(0, 1, 2, 4, 3, 5).reshape(-1, taps).to(table.dtype)
    pooled = F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")  # [B * R * s * s, C]
    return pooled.reshape(batch * count, output_size, output_size, table.shape[1]).permute(0, 3, 1, 2)


def uses_torchvision(feature_map: torch.Tensor, sampling_ratio: int) -> bool:
    return feature_map.device.type != "cpu" or is_exporting() or sampling_ratio <= 0


def pixel_table(maps: list[torch.Tensor]):
    """The pixels of all maps as rows [sum of B * H * W, C] (channels last), with each map's first row,
    height and width as tensors [L]."""
    table = torch.cat([feature_map.permute(0, 2, 3, 1).reshape(-1, feature_map.shape[1]) for feature_map in maps])
    device = table.device
    counts = torch.tensor([feature_map[:, 0].numel() for feature_map in maps], device=device)
    level_base = torch.cumsum(counts, 0) - counts
    level_height = torch.tensor([feature_map.shape[2] for feature_map in maps], device=device)
    level_width = torch.tensor([feature_map.shape[3] for feature_map in maps], device=device)
    return table, level_base, level_height, level_width


def axis_taps(starts: torch.Tensor, lengths: torch.Tensor, sizes: torch.Tensor, output_size: int,
              sampling_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis, the pixels each bin reads and their weights: starts, lengths [B, R] in
    feature-map pixels, sizes [B, R] the map's extent -> (index, weight), each
    [B, R, output_size, 2 * sampling_ratio] (2 bilinear neighbours per sample; weights include the
    1 / sampling_ratio of the bin average, and are 0 for samples beyond one pixel outside the map)."""
    steps = torch.arange(output_size * sampling_ratio, device=starts.device, dtype=starts.dtype)
    positions = starts[..., None] + lengths[..., None] * ((steps + 0.5) / (output_size * sampling_ratio))
    sizes = sizes[..., None].to(starts.dtype)
    inside = (positions >= -1.0) & (positions <= sizes)
    positions = positions.clamp(min=0.0)
    low = torch.minimum(positions.floor(), sizes - 1)
    at_last = low >= sizes - 1
    positions = torch.where(at_last, low, positions)
    high = torch.where(at_last, low, low + 1)
    fraction = positions - low
    index = torch.stack([low, high], dim=-1).to(torch.int64)
    weight = torch.stack([1.0 - fraction, fraction], dim=-1) * (inside[..., None] / sampling_ratio)
    shape = (*starts.shape, output_size, 2 * sampling_ratio)
    return index.reshape(shape), weight.reshape(shape)


def torchvision_roi_align(maps: list[torch.Tensor], rois: torch.Tensor, output_size: int, strides: list[int],
                          sampling_ratio: int, levels: torch.Tensor) -> torch.Tensor:
    """The same pooling with torchvision's operator, one call per map."""
    batch, count = rois.shape[:2]
    image_index = torch.arange(batch, device=rois.device, dtype=rois.dtype).repeat_interleave(count)
    indexed = torch.cat([image_index[:, None], rois.reshape(-1, 4)], dim=1)
    if len(maps) == 1:
        return roi_align(maps[0], indexed, output_size, spatial_scale=1.0 / strides[0], sampling_ratio=sampling_ratio)
    flat_levels = levels.reshape(-1)
    pooled = indexed.new_zeros(batch * count, maps[0].shape[1], output_size, output_size, dtype=maps[0].dtype)
    for level, (feature_map, stride) in enumerate(zip(maps, strides)):
        # One host sync per level: the operator needs each level's RoIs as a tensor of their own.
        index = (flat_levels == level).nonzero().squeeze(1)
        pooled[index] = roi_align(feature_map, indexed[index], output_size, spatial_scale=1.0 / stride,
                                  sampling_ratio=sampling_ratio)
    return pooled
