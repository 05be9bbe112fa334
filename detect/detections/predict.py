"""The one prediction path: a batch of images in, detections out. Evaluation, `Detector` (detect
infer), the benchmarks and ONNX export all predict through it.

    detections = predict(model, images, targets, device, mean, std, autocast)
        images   uint8 pixels or float32 normalized [B, 3, H, W], on the host (a loader batch)
        targets  B dicts with `image_size` (h, w) and `scale` (sx, sy), as the eval transforms give
        returns  B dicts {boxes float32 [K, 4] xyxy in original image pixels, scores [K] descending,
                 labels int64 [K] in 1..C}, on `device`
        the steps: move to `device` (pinned first on CUDA), normalize (detect.data.normalize), then
        `predict_batch`

    predict_batch(model, images, image_sizes, scales, autocast)     a batch already on the device
        -> the same per-image dicts: `padded_predictions`, cut per image (one host sync)

    padded_predictions(model, images, image_sizes, scales, autocast)
        -> padded detections {boxes [B, D, 4], scores [B, D], labels [B, D], num [B]}
           (detect/detections/padded.py): forward under autocast, head outputs cast to float32,
           postprocess. Tracing keeps it: `detect export` traces exactly this.

`autocast` is a function returning a context manager (detect.device.autocast_context for a
config and device); None runs in the model's own precision. A DistributedDataParallel wrapper runs
the forward; its `module` the postprocess.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
from torch import nn

from detect.data.normalize import batch_to_device
from detect.detections.padded import split_detections


def padded_predictions(model: nn.Module, images: torch.Tensor, image_sizes: torch.Tensor, scales: torch.Tensor,
                       autocast: Callable | None = None) -> dict[str, torch.Tensor]:
    """Forward under autocast, float32 head outputs, postprocess -> padded detections (see above)."""
    with (autocast or contextlib.nullcontext)():
        outputs = model(images, image_sizes)
    outputs = {key: value.float() if torch.is_tensor(value) and value.is_floating_point() else value
               for key, value in outputs.items()}
    return getattr(model, "module", model).postprocess(outputs, image_sizes, scales)


@torch.no_grad()
def predict_batch(model: nn.Module, images: torch.Tensor, image_sizes: torch.Tensor, scales: torch.Tensor,
                  autocast: Callable | None = None) -> list[dict[str, torch.Tensor]]:
    """A normalized batch on the model's device -> one dict of detections per image (see above)."""
    return split_detections(padded_predictions(model, images, image_sizes, scales, autocast))


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, targets: Sequence[dict], device: torch.device,
            mean: Sequence[float] | None, std: Sequence[float] | None,
            autocast: Callable | None = None) -> list[dict[str, torch.Tensor]]:
    """A loader batch on the host -> one dict of detections per image, on `device` (see above)."""
    if device.type == "cuda" and images.device.type == "cpu" and not images.is_pinned():
        images = images.pin_memory()  # page-locked: the copy overlaps the host's next steps
    images, image_sizes, scales = batch_to_device(images, targets, device, mean, std)
    return predict_batch(model, images, image_sizes, scales, autocast)
