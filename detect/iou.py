"""Intersection over union: the one module the models, the metrics and the tracker ask.

    box_iou(boxes1, boxes2)            torch [..., N, 4] x [..., M, 4] -> [..., N, M]: matching and NMS
                                       (models/), batch dims broadcast, traced into exported graphs
    iou_matrix(boxes_a, boxes_b)       numpy [A, 4] x [B, 4] -> float64 [A, B]: tracking, scoring tracks
    paired_iou(boxes_a, boxes_b)       numpy [P, 4] x [P, 4] -> float64 [P]: the VOC metrics, the confusion
                                       matrix (IoU of given pairs, not of every pair)
    coco_paired_iou(dt, gt, gt_crowd)  numpy xywh rows as pycocotools' bbIou computes them, a crowd region's
                                       union being the detection's area: COCO AP equal to pycocotools' bit
                                       for bit (evaluation/coco_eval.py)

Boxes are xyxy pixels (COCO's: x, y, w, h); an empty union gives 0. The numpy ones share one formula
(`_iou`), in float64.
"""

from __future__ import annotations

import numpy as np
import torch


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair within each batch entry: [..., N, 4] x [..., M, 4] -> [..., N, M].

    Leading dims broadcast (priors [A, 4] against ground truth [B, G, 4] -> [B, A, G] after an
    unsqueeze); an empty union gives 0. torchvision.ops.box_iou is the [N, 4] x [M, 4] case. For
    matching and NMS: its in-place arithmetic (for memory) is not for boxes that need gradients.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0)
    # Width and height of the intersections, each [..., N, M], clamped in place: no [..., N, M, 2]
    # corner tensors (SSD's postprocess takes this over thousands of 200 x 200 groups).
    width = torch.minimum(boxes1[..., :, None, 2], boxes2[..., None, :, 2]) \
        - torch.maximum(boxes1[..., :, None, 0], boxes2[..., None, :, 0])
    height = torch.minimum(boxes1[..., :, None, 3], boxes2[..., None, :, 3]) \
        - torch.maximum(boxes1[..., :, None, 1], boxes2[..., None, :, 1])
    inter = width.clamp_(min=0).mul_(height.clamp_(min=0))
    union = (area1[..., :, None] + area2[..., None, :]).sub_(inter)
    return inter.div_(union.clamp_(min=1e-12))  # an empty union has no intersection: 0 / 1e-12


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """float64 [A, B]: the IoU of every box of `boxes_a` [A, 4] with every box of `boxes_b` [B, 4]."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :])


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """float64 [P]: the IoU of each pair of rows of two xyxy box arrays [P, 4]."""
    return _iou(boxes_a.astype(np.float64, copy=False), boxes_b.astype(np.float64, copy=False))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcastable xyxy arrays [..., 4] -> [...] (0 where a union is empty)."""
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def coco_paired_iou(dt_box: np.ndarray, gt_box: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """[N] IoU of each (detection, ground truth) row pair as pycocotools' bbIou computes it (double
    precision, the same operations in the same order); a crowd region's union is the detection's area."""
    dx, dy, dw, dh = dt_box.T
    gx, gy, gw, gh = gt_box.T
    w = np.fmin(dw + dx, gw + gx) - np.fmax(dx, gx)
    h = np.fmin(dh + dy, gh + gy) - np.fmax(dy, gy)
    inter = w * h
    dt_area, gt_area = dw * dh, gw * gh
    union = np.where(gt_crowd, dt_area, dt_area + gt_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)
