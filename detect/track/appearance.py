"""What a tracked object looks like: a colour histogram of the middle of its box, so that the tracker
can tell apart two objects whose boxes meet (after an occlusion, at a crossing).

    features = colour_histograms(frame_rgb uint8 [H, W, 3], boxes [N, 4] xyxy) -> float32 [N, 64]
        a 4 x 4 x 4 RGB histogram of the box's middle (its central 60 % each way), summing to 1
    distance(features_a [A, 64], features_b [B, 64]) -> float [A, B] in [0, 1]: 1 - histogram intersection
"""

from __future__ import annotations

import numpy as np

BINS = 4  # per colour channel
MIDDLE = 0.6  # the share of the box's width and height used (its edges show background)


def colour_histograms(frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    height, width = frame_rgb.shape[:2]
    features = np.zeros((len(boxes), BINS ** 3), np.float32)
    shift = 8 - int(np.log2(BINS))  # the top bits of each channel
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        margin_x, margin_y = (x2 - x1) * (1 - MIDDLE) / 2, (y2 - y1) * (1 - MIDDLE) / 2
        left, top = int(np.clip(x1 + margin_x, 0, width - 1)), int(np.clip(y1 + margin_y, 0, height - 1))
        right, bottom = int(np.clip(x2 - margin_x, left + 1, width)), int(np.clip(y2 - margin_y, top + 1, height))
        quantised = frame_rgb[top:bottom:2, left:right:2] >> shift  # every other pixel: enough for a histogram
        codes = (quantised[..., 0].astype(np.int32) * BINS + quantised[..., 1]) * BINS + quantised[..., 2]
        counts = np.bincount(codes.ravel(), minlength=BINS ** 3)
        features[index] = counts / max(counts.sum(), 1)
    return features


def distance(features_a: np.ndarray, features_b: np.ndarray) -> np.ndarray:
    if len(features_a) == 0 or len(features_b) == 0:
        return np.zeros((len(features_a), len(features_b)))
    return 1.0 - np.minimum(features_a[:, None, :], features_b[None, :, :]).sum(-1)
