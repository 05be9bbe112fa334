"""Detections drawn on (de-normalised) batch images, for TensorBoard and the main job's picture."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.utils import draw_bounding_boxes


def denormalise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float [3, h, w] normalised -> uint8 [3, h, w]."""
    mean_t = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return ((image * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)


def draw_detections(image_uint8: torch.Tensor, detection: dict, class_names: Sequence[str],
                    score_thresh: float = 0.3) -> torch.Tensor:
    """uint8 [3, h, w] with the boxes (in this image's pixels) scoring at least `score_thresh`."""
    keep = detection["scores"] >= score_thresh
    boxes = detection["boxes"][keep].float()
    labels = [f"{class_names[int(label) - 1]} {float(score):.2f}"
              for label, score in zip(detection["labels"][keep], detection["scores"][keep])]
    if boxes.numel() == 0:
        return image_uint8
    return draw_bounding_boxes(image_uint8, boxes, labels=labels, colors="red", width=2)


def draw_batch_detections(images: torch.Tensor, targets: Sequence[dict], detections: Sequence[dict],
                          mean, std, class_names: Sequence[str], score_thresh: float = 0.3) -> list[torch.Tensor]:
    """Batch images (padded, normalised) and detections in original pixels -> uint8 [3, h, w] images of
    each valid (resized) region with the detections scaled onto it."""
    drawn = []
    for image, target, detection in zip(images.cpu().float(), targets, detections):
        height, width = (int(v) for v in target["image_size"])
        scale = torch.as_tensor(target["scale"], dtype=torch.float32).repeat(2)
        resized = {**detection, "boxes": detection["boxes"].float() * scale}
        drawn.append(draw_detections(denormalise(image[:, :height, :width], mean, std), resized, class_names,
                                     score_thresh))
    return drawn
