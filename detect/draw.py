"""Drawing detections on images with OpenCV (used by `data show` and by inference).

`draw_boxes(image, boxes, labels, class_names, scores=None)`: image uint8 RGB [H, W, 3] (a copy is
drawn on and returned); boxes [N, 4] xyxy pixels; labels [N] in 1..C (label i is class_names[i-1]);
scores [N] or None. Each class keeps one colour everywhere; the label text sits on a filled
background of that colour, in black or white, whichever reads better.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour per label (golden-ratio steps round the hue circle)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes, labels, class_names: Sequence[str], scores=None,
               thickness: int | None = None, texts: Sequence[str] | None = None) -> np.ndarray:
    """`texts`: each box's label text instead of its class name and score (a tracked video's ids)."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    scores = None if scores is None else np.asarray(scores, dtype=np.float32).reshape(-1)
    thickness = thickness or max(1, round(min(out.shape[:2]) / 300))
    font_scale = 0.4 * thickness
    for i, (box, label) in enumerate(zip(boxes, labels)):
        colour = class_colour(int(label))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        name = class_names[label - 1] if 1 <= label <= len(class_names) else str(int(label))
        text = texts[i] if texts is not None else name if scores is None else f"{name} {scores[i]:.2f}"
        _label(out, text, x0, y0, colour, font_scale, thickness)
    return out


def _label(image: np.ndarray, text: str, x: int, y: int, colour, font_scale: float, thickness: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), baseline = cv2.getTextSize(text, font, font_scale, max(1, thickness - 1))
    top = y - h - baseline - 2 if y - h - baseline - 2 >= 0 else y  # above the box, else inside it
    x = min(max(0, x), max(0, image.shape[1] - w - 2))
    cv2.rectangle(image, (x, top), (x + w + 2, top + h + baseline + 2), colour, -1)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + h + 1), font, font_scale, ink, max(1, thickness - 1), cv2.LINE_AA)


def make_grid(images: Sequence[np.ndarray], columns: int, cell: int = 320, gap: int = 4) -> np.ndarray:
    """Images (uint8 RGB, any sizes) fitted into `cell` x `cell` tiles of a grid on a grey ground."""
    rows = max(1, -(-len(images) // columns))
    grid = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 96, np.uint8)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        factor = cell / max(h, w)
        tile = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        top = gap + (i // columns) * (cell + gap)
        left = gap + (i % columns) * (cell + gap)
        grid[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return grid
