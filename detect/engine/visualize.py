"""Validation images with their detections drawn (detect.draw), for TensorBoard."""

from __future__ import annotations

from typing import Sequence

import torch

from detect.data.normalize import to_pixels
from detect.draw import draw_boxes

# Predictions drawn on the validation images TensorBoard shows during training: enough to see what the
# model finds without the clutter of its lowest scores.
VISUALIZE_SCORE_THRESHOLD = 0.3

def draw_batch_detections(images: torch.Tensor, targets: Sequence[dict], detections: Sequence[dict],
                          mean, std, class_names: Sequence[str],
                          score_threshold: float = VISUALIZE_SCORE_THRESHOLD) -> list[torch.Tensor]:
    """Loader batch images (padded; uint8 pixels, or float32 normalized with mean / std) and detections
    in original pixels -> uint8 [3, h, w] images of each valid (resized) region with the detections
    scoring at least `score_threshold` scaled onto it."""
    drawn = []
    for image, target, detection in zip(images.cpu(), targets, detections):
        height, width = (int(v) for v in target["image_size"])
        scale = torch.as_tensor(target["scale"], dtype=torch.float32).repeat(2)
        keep = detection["scores"] >= score_threshold
        pixels = to_pixels(image[:, :height, :width], mean, std).permute(1, 2, 0).contiguous().numpy()
        picture = draw_boxes(pixels, (detection["boxes"][keep].float() * scale).numpy(),
                             detection["labels"][keep].numpy(), class_names, detection["scores"][keep].numpy())
        drawn.append(torch.from_numpy(picture).permute(2, 0, 1))
    return drawn
