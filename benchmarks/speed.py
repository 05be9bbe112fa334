"""The speed harness: synthetic batches on the device and timed steps.

Used by tools/bench_speed.py (ours against torchvision's model of the same shape, same process).

    batches = make_batches(count, batch_size, height, width, num_classes, device, vary_sizes=True)
        each: {"images" [B, 3, Hp, Wp] float32 (padded to size_divisible), "image_sizes" int64 [B, 2],
               "scales" float32 [B, 2] (ones), "targets" list of B {boxes [N, 4], labels [N]},
               "image_list" list of B [3, h, w] views (torchvision's input: the same pixels)}
    times_ms = time_steps(step, batches, warmup, repeats, device)   # one entry per timed step

The images are noise with filled rectangles whose colour depends on their class, so that a model can
learn something from them in a few steps (`--train-steps`), and every image has several boxes.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from detect.device import synchronize

# ---------------------------------------------------------------------------------------------------
# Batches


def make_batches(
    count: int,
    batch_size: int,
    height: int,
    width: int,
    num_classes: int,
    device: torch.device | str = "cpu",
    vary_sizes: bool = False,
    size_divisible: int = 32,
    boxes_per_image: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> list[dict]:
    """`count` batches of `batch_size` images of at most height x width (see the module docstring).

    vary_sizes: the first image of a batch is height x width, the others keep the height and have a
    random width in [0.75, 1] x width (keep-ratio resizing of mixed aspect ratios), zero-padded.
    """
    generator = torch.Generator().manual_seed(seed)
    palette = torch.rand(num_classes + 1, 3, generator=generator) * 2 - 1
    padded_h = -(-height // size_divisible) * size_divisible
    padded_w = -(-width // size_divisible) * size_divisible
    batches = []
    for _ in range(count):
        images = torch.zeros(batch_size, 3, padded_h, padded_w)
        sizes, targets = [], []
        for index in range(batch_size):
            w = width if index == 0 or not vary_sizes else int(
                width * (0.75 + 0.25 * torch.rand(1, generator=generator)))
            image, target = _synthetic_image(height, w, palette, boxes_per_image, generator)
            images[index, :, :height, :w] = image
            sizes.append((height, w))
            targets.append(target)
        images = images.to(device)
        image_sizes = torch.tensor(sizes, dtype=torch.int64)
        batches.append({
            "images": images,
            "image_sizes": image_sizes.to(device),
            "scales": torch.ones(batch_size, 2).to(device),
            "targets": [{k: v.to(device) for k, v in t.items()} for t in targets],
            "image_list": [images[i, :, :h, :w] for i, (h, w) in enumerate(sizes)],
        })
    return batches


def _synthetic_image(height, width, palette, boxes_per_image, generator) -> tuple[torch.Tensor, dict]:
    """Noise in [-1, 1] (a normalized image's range) with class-coloured rectangles on it."""
    image = torch.rand(3, height, width, generator=generator) * 0.6 - 0.3
    low, high = boxes_per_image
    count = int(torch.randint(low, high + 1, (1,), generator=generator))
    labels = torch.randint(1, palette.shape[0], (count,), generator=generator)
    sides = torch.rand(count, 2, generator=generator) * 0.45 + 0.05  # 5% to 50% of each image side
    box_w, box_h = (sides[:, 0] * width).floor(), (sides[:, 1] * height).floor()
    x1 = (torch.rand(count, generator=generator) * (width - box_w)).floor()
    y1 = (torch.rand(count, generator=generator) * (height - box_h)).floor()
    boxes = torch.stack([x1, y1, x1 + box_w, y1 + box_h], dim=1)
    for (bx1, by1, bx2, by2), label in zip(boxes.long().tolist(), labels.tolist()):
        image[:, by1:by2, bx1:bx2] = palette[label][:, None, None] + image[:, by1:by2, bx1:bx2] * 0.3
    return image, {"boxes": boxes.float(), "labels": labels.long()}


# ---------------------------------------------------------------------------------------------------
# Timing


def time_steps(
    step: Callable[[dict], object], batches: list[dict], warmup: int, repeats: int, device: torch.device
) -> list[float]:
    """Run `step(batch)` warmup + repeats times over the batches in turn; milliseconds of each timed
    step, with the device synchronised before and after each one."""
    times = []
    for index in range(warmup + repeats):
        batch = batches[index % len(batches)]
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def summarise(times_ms: list[float], batch_size: int) -> dict:
    """Median milliseconds per step and images per second (from the median)."""
    median = statistics.median(times_ms)
    return {"ms_per_iter": median, "images_per_s": batch_size * 1000.0 / median, "ms_all": list(times_ms)}
