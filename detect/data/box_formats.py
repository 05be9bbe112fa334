"""Box formats at the edges of the pipeline, one function per direction, named after the formats.

Inside the pipeline boxes are absolute pixel xyxy. Files bring other conventions: COCO's
(x, y, width, height), and VOC XML's 1-based inclusive corners. Readers and writers convert here, and
nowhere else.
"""

from __future__ import annotations

import numpy as np


def voc_to_xyxy(voc_boxes: np.ndarray) -> np.ndarray:
    """VOC (xmin, ymin, xmax, ymax), 1-based inclusive pixel corners -> pipeline xyxy float32 [N, 4].

    We subtract 1 from xmin and ymin and keep xmax and ymax, as is common practice: a box covering
    pixel columns 1..10 (1-based) becomes x from 0 to 10, its width 10 pixels in 0-based edges. The
    VOC devkit's +1 in widths and areas then comes out by itself: its IoU equals ours. Computed in
    float64, so `voc_to_xyxy(xyxy_to_voc(b))` gives float32 `b` back bit for bit.
    """
    boxes = np.asarray(voc_boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, :2] -= 1.0
    return boxes.astype(np.float32)


def xyxy_to_voc(boxes: np.ndarray) -> np.ndarray:
    """Inverse of `voc_to_xyxy`: pipeline xyxy -> VOC 1-based corners float64 [N, 4] (float64 keeps
    the round trip exact)."""
    voc_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    voc_boxes[:, :2] += 1.0
    return voc_boxes


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Pipeline xyxy [N, 4] -> COCO (x, y, width, height) float64 [N, 4]."""
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    xywh[:, 2:] -= xywh[:, :2]
    return xywh


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO (x, y, width, height) [N, 4] -> pipeline xyxy float64 [N, 4]."""
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    xyxy[:, 2:] += xyxy[:, :2]
    return xyxy
