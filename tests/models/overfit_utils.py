"""Helpers for the overfit test: a few synthetic images with drawn shapes, and a small VOC-style AP."""

from __future__ import annotations

import numpy as np
import torch


def shapes_batch(count: int = 4, size: int = 128, seed: int = 0):
    """`count` images [count, 3, size, size] (roughly normalised) with 1-3 filled rectangles (label 1)
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


def _iou(box, boxes):
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def mean_ap(detections: list[dict], targets: list[dict], num_classes: int, iou_thresh: float = 0.5) -> float:
    """All-point interpolated AP at `iou_thresh`, averaged over classes (greedy matching by score)."""
    aps = []
    for label in range(1, num_classes + 1):
        records, total = [], 0
        for image, (found, truth) in enumerate(zip(detections, targets)):
            total += int((truth["labels"] == label).sum())
            keep = found["labels"] == label
            records += [(float(s), image, b.numpy()) for s, b in zip(found["scores"][keep], found["boxes"][keep])]
        if total == 0:
            continue
        records.sort(key=lambda r: -r[0])
        used = [np.zeros(int((t["labels"] == label).sum()), dtype=bool) for t in targets]
        hits = []
        for _, image, box in records:
            gt = targets[image]["boxes"][targets[image]["labels"] == label].numpy()
            if len(gt) == 0:
                hits.append(0)
                continue
            overlaps = _iou(box, gt)
            best = int(overlaps.argmax())
            hit = overlaps[best] >= iou_thresh and not used[image][best]
            if hit:
                used[image][best] = True
            hits.append(int(hit))
        tp = np.cumsum(hits)
        recall = tp / total
        precision = tp / np.arange(1, len(hits) + 1)
        recall = np.concatenate([[0.0], recall, [1.0]])
        precision = np.concatenate([[0.0], precision, [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        changes = np.where(recall[1:] != recall[:-1])[0]
        aps.append(float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1])))
    return float(np.mean(aps))
