"""Batch normalization on the model's device, and its inverse for drawing.

With `input.normalize_on: device` (the default) the loader's batches hold uint8 pixels: its workers
resize only, so workers, shared memory and the pin-memory copy move a quarter of float32's bytes.
Every consumer of loader batches calls `normalize_batch` right after moving the batch to its device:

    images = normalize_batch(images.to(device, non_blocking=True), image_sizes, mean, std)
        in:   images uint8 [B, 3, H, W] (zero-padded pixels) or float32 [B, 3, H, W] (already
              normalized by the loader: returned as it is); image_sizes int [B, 2] (h, w), each image's
              valid top-left region; mean, std: 3 floats each, for 0..1 pixels (input.mean / std)
        out:  float32 [B, 3, H, W], (pixel / 255 - mean) / std inside each image, exactly 0 outside it

which is what the loader's float32 path gives (within float32 rounding): there the padding is zero
after normalization, not a zero pixel, so the region outside each image is masked here.

`batch_to_device(images, targets, device, mean, std)` does the whole move for a loader batch: images
(optionally channels_last), each image's valid size and scale, with no copy that waits for the GPU.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch


def normalize_batch(images: torch.Tensor, image_sizes: torch.Tensor, mean: Sequence[float] | None,
                    std: Sequence[float] | None) -> torch.Tensor:
    """A loader batch as the model takes it (see the module docstring); float input passes through."""
    if images.is_floating_point():
        return images
    if images.dtype != torch.uint8:
        raise TypeError(f"a batch of images must be uint8 pixels or normalized float32, got {images.dtype}")
    if mean is None or std is None:
        raise ValueError("a uint8 batch needs input.mean and input.std to be normalized")
    scale, offset = _affine(tuple(float(m) for m in mean), tuple(float(s) for s in std), images.device)
    # Convert, then scale and shift in place: on the CPU this is about twice as fast as one
    # type-promoting multiply (whose uint8 -> float32 cast is not vectorised there); on CUDA both cost
    # next to nothing. `float()` keeps the memory format (channels_last stays channels_last).
    normalized = images.float().mul_(scale).add_(offset)
    image_sizes = torch.as_tensor(image_sizes, device=images.device)
    return normalized.masked_fill_(~valid_mask(image_sizes, images.shape[-2:]), 0.0)


def batch_to_device(images: torch.Tensor, targets: Sequence[dict], device: torch.device,
                    mean: Sequence[float] | None, std: Sequence[float] | None,
                    channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loader batch on `device`: (images float32 normalized [B, 3, H, W], image_sizes int64 [B, 2]
    (h, w), scales float32 [B, 2] (sx, sy)).

    Every copy is non_blocking: a blocking host-to-device copy waits for the GPU's queued work, a
    host sync in every training step. Sizes and scales come from pageable memory, which CUDA stages
    at once, so the host tensors may be freed right after.
    """
    images = images.to(device, non_blocking=True)
    if channels_last:  # before normalizing: a uint8 batch is a quarter of the bytes to reorder
        images = images.contiguous(memory_format=torch.channels_last)
    image_sizes = torch.stack([torch.as_tensor(t["image_size"]) for t in targets]).to(device, non_blocking=True)
    scales = torch.stack([torch.as_tensor(t["scale"], dtype=torch.float32) for t in targets])
    scales = scales.to(device, non_blocking=True)
    return normalize_batch(images, image_sizes, mean, std), image_sizes, scales


def valid_mask(image_sizes: torch.Tensor, padded_size: Sequence[int]) -> torch.Tensor:
    """bool [B, 1, H, W]: True inside each image's (h, w) top-left region of the padded H x W batch."""
    height, width = padded_size
    device = image_sizes.device
    heights = image_sizes[:, 0].reshape(-1, 1, 1, 1)
    widths = image_sizes[:, 1].reshape(-1, 1, 1, 1)
    rows = torch.arange(height, device=device).view(1, 1, -1, 1)
    columns = torch.arange(width, device=device).view(1, 1, 1, -1)
    return (rows < heights) & (columns < widths)


@lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, offset) float32 [1, 3, 1, 1] on `device` with pixel * scale + offset = (pixel / 255 - mean) / std.

    Cached: made once per device, so a training step copies no constants to the GPU (a blocking copy
    from pageable memory would make the host wait for the GPU every step)."""
    mean_t = torch.tensor(mean, dtype=torch.float64)
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(torch.float32).view(1, 3, 1, 1)
    offset = (-mean_t / std_t).to(torch.float32).view(1, 3, 1, 1)
    return scale.to(device), offset.to(device)


def to_pixels(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One image of a batch back to uint8 [3, h, w] pixels, for drawing: uint8 images are that already;
    float32 ones (normalized) are denormalized."""
    if image.dtype == torch.uint8:
        return image
    mean_t = torch.tensor(mean, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=image.device).view(3, 1, 1)
    return ((image.float() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
