"""What `POST /v1/detect` answers for each image: detect infer's detections.json record.

    {"id": i, "file": upload name, "height": h, "width": w,
     "detections": [{"box": [x1, y1, x2, y2], "score", "label", "class_name"}, ...],
     "annotated_jpeg": base64 JPEG of the image with its boxes drawn (only when asked)}

Boxes are xyxy in the original image's pixels. The model runs once per image at the lowest score the
server keeps (`model_score_floor`); each request's own score threshold and classes are applied here,
so requests with different options still share one batch.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from detect.infer import Detections, draw_detections

JPEG_QUALITY = 90


def keep_detections(found: Detections, score_threshold: float, labels: set[int] | None) -> Detections:
    """The detections scoring at least `score_threshold` whose label is in `labels` (None: any label)."""
    keep = found.scores >= score_threshold
    if labels is not None:
        keep &= np.isin(found.labels, sorted(labels))
    names = [name for name, kept in zip(found.class_names, keep) if kept]
    return replace(found, boxes=found.boxes[keep], scores=found.scores[keep], labels=found.labels[keep],
                   class_names=names)


def image_record(index: int, name: str, found: Detections) -> dict[str, Any]:
    return {"id": index, "file": name, "height": found.image_size[0], "width": found.image_size[1],
            "detections": found.to_list()}


def annotated_jpeg_base64(image_rgb: np.ndarray, found: Detections, class_names: list[str]) -> str:
    """The image with its detections drawn (detect infer's drawing), as a base64 JPEG."""
    drawn = draw_detections(image_rgb, found, class_names)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("cannot encode the annotated image as JPEG")
    return base64.b64encode(encoded.tobytes()).decode("ascii")
