"""Our RoIAlign against torchvision's: values and gradients, one map and pyramids, RoIs outside the
map, smaller than a pixel, and maps one pixel wide; the torchvision fallbacks."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from detect.models.roi_align import roi_align_batched


def random_rois(batch: int, count: int, extent: float, generator: torch.Generator) -> torch.Tensor:
    corners = torch.rand(batch, count, 2, generator=generator) * extent * 1.2 - 0.1 * extent
    sides = torch.rand(batch, count, 2, generator=generator) ** 2 * extent * 0.8 + 0.2
    return torch.cat([corners, corners + sides], dim=-1)


def torchvision_pooled(feature_map, rois, output_size, stride, sampling_ratio):
    batch, count = rois.shape[:2]
    image_index = torch.arange(batch, dtype=rois.dtype).repeat_interleave(count)
    indexed = torch.cat([image_index[:, None], rois.reshape(-1, 4)], dim=1)
    return roi_align(feature_map, indexed, output_size, spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio)


def values_and_gradient(pool, feature_map, output_grad=None):
    feature_map = feature_map.detach().requires_grad_(True)
    pooled = pool(feature_map)
    if output_grad is None:
        output_grad = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(1))
    (gradient,) = torch.autograd.grad((pooled * output_grad).sum(), feature_map)
    return pooled, gradient, output_grad


@pytest.mark.parametrize("height, width, sampling_ratio", [(12, 17, 2), (1, 9, 2), (6, 1, 1), (9, 9, 3)])
def test_equals_torchvision_values_and_gradients(height, width, sampling_ratio):
    generator = torch.Generator().manual_seed(0)
    stride = 16
    feature_map = torch.randn(3, 4, height, width, generator=generator)
    rois = random_rois(3, 20, stride * max(height, width), generator)
    rois[0, 0] = torch.tensor([-90.0, -90.0, -40.0, -40.0])  # entirely outside: zeros
    rois[0, 1] = torch.tensor([5.0, 5.0, 5.5, 5.2])  # smaller than a pixel
    rois[1, 0] = torch.tensor([-10.0, -12.0, stride * width + 10.0, stride * height + 14.0])  # over the border
    expected, expected_grad, output_grad = values_and_gradient(
        lambda f: torchvision_pooled(f, rois, 7, stride, sampling_ratio), feature_map)
    ours, ours_grad, _ = values_and_gradient(
        lambda f: roi_align_batched(f, rois, 7, stride, sampling_ratio), feature_map, output_grad)
    assert ours.shape == (60, 4, 7, 7)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-5, atol=1e-5)
    assert ours[0].abs().max() == 0


def test_pyramid_equals_one_torchvision_call_per_level():
    generator = torch.Generator().manual_seed(2)
    strides = (4, 8, 16)
    maps = [torch.randn(2, 3, 64 // s, 48 // s, generator=generator) for s in strides]
    rois = random_rois(2, 15, 64, generator)
    levels = torch.randint(0, 3, (2, 15), generator=generator)
    ours = roi_align_batched(maps, rois, 5, strides, 2, levels)
    for image in range(2):
        for roi in range(15):
            level = int(levels[image, roi])
            expected = torchvision_pooled(maps[level][image:image + 1], rois[image:image + 1, roi:roi + 1], 5,
                                          strides[level], 2)
            torch.testing.assert_close(ours[image * 15 + roi], expected[0], rtol=1e-5, atol=1e-5)


def test_adaptive_sampling_and_tracing_use_torchvisions_operator():
    generator = torch.Generator().manual_seed(3)
    feature_map = torch.randn(2, 3, 10, 10, generator=generator)
    rois = random_rois(2, 6, 160, generator)
    adaptive = roi_align_batched(feature_map, rois, 7, 16, sampling_ratio=0)
    torch.testing.assert_close(adaptive, torchvision_pooled(feature_map, rois, 7, 16, 0), rtol=0, atol=0)
    traced = torch.jit.trace(lambda f, r: roi_align_batched(f, r, 7, 16, 2), (feature_map, rois))
    assert "roi_align" in str(traced.graph)
    torch.testing.assert_close(traced(feature_map, rois), torchvision_pooled(feature_map, rois, 7, 16, 2),
                               rtol=0, atol=0)


def test_images_without_rois_give_an_empty_batch():
    feature_map = torch.randn(2, 3, 8, 8)
    pooled = roi_align_batched(feature_map, torch.zeros(2, 0, 4), 7, 16, 2)
    assert pooled.shape == (0, 3, 7, 7)
