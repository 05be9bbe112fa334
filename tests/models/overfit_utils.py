"""Helpers for the overfit test: a few synthetic images with drawn shapes, and their VOC mAP."""

from __future__ import annotations

import numpy as np
import torch

from detect.evaluation.voc import VOCInputs, ap_from_curves, class_curves


def shapes_batch(count: int = 4, size: int = 128, seed: int = 0):
    """`count` images [count, 3, size, size] (roughly normalized) with 1-3 filled rectangles (label 1)
    and circles (label 2) each, and their targets (boxes xyxy pixels, labels)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), dtype=np.float32)
    targets = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        images[i] = rng.uniform(0.0, 0.15, size=(size, size, 3))
        boxes, labels = [], []
        for _ in range(rng.integers(1, 4)):
            label = int(rng.integers(1, 3))
            extent = int(rng.integers(24, 56))
            x0, y0 = (int(v) for v in rng.integers(0, size - extent, size=2))
            colour = rng.uniform(0.5, 1.0, size=3)
            if label == 1:
                images[i, y0 : y0 + extent, x0 : x0 + extent] = colour
            else:
                radius = extent / 2
                inside = (xx - x0 - radius + 0.5) ** 2 + (yy - y0 - radius + 0.5) ** 2 <= radius**2
                images[i][inside] = colour
            boxes.append([x0, y0, x0 + extent, y0 + extent])
            labels.append(label)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    tensor = (torch.from_numpy(images).permute(0, 3, 1, 2) - 0.4) / 0.3
    return tensor.contiguous(), targets


def mean_ap(detections: list[dict], targets: list[dict], num_classes: int, iou_thresh: float = 0.5) -> float:
    """VOC all-point mAP at `iou_thresh` (detect.evaluation.voc) of per-image detections against targets."""
    def flat(items, key):
        return np.concatenate([np.asarray(item[key]) for item in items]) if items else np.zeros(0)

    inputs = VOCInputs(
        det_image=np.concatenate([np.full(len(d["scores"]), i) for i, d in enumerate(detections)]).astype(np.int64),
        det_boxes=flat(detections, "boxes").reshape(-1, 4),
        det_scores=flat(detections, "scores"),
        det_labels=flat(detections, "labels").astype(np.int64),
        gt_image=np.concatenate([np.full(len(t["labels"]), i) for i, t in enumerate(targets)]).astype(np.int64),
        gt_boxes=flat(targets, "boxes").reshape(-1, 4),
        gt_labels=flat(targets, "labels").astype(np.int64),
        gt_ignore=np.zeros(sum(len(t["labels"]) for t in targets), dtype=bool),
    )
    return ap_from_curves(class_curves(inputs, num_classes, iou_thresh), eleven_point=False)[1] or 0.0
