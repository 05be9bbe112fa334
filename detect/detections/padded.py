"""Detections as every detector's `postprocess` returns them: fixed-shape tensors that tracing keeps.

    {"boxes"  float32 [B, D, 4]  xyxy in the original image's pixels,
     "scores" float32 [B, D]     descending per image,
     "labels" int64   [B, D]     1..C,
     "num"    int64   [B]        how many of the D slots of each image hold a detection}

Slots past `num` are zero (box 0, score 0, label 0). D is the detector's `detections_per_img` (or
fewer where it has fewer candidates). Per-image lists are cut from this at the edges
(`split_detections`): evaluation, `Detector`, the benchmarks; ONNX export returns it as it is.
Boxes come back to the original image's pixels in one place, `to_original_pixels`: inside both
detectors' postprocess (and so inside an exported graph), and for a graph fed `scales` of 1.
"""

from __future__ import annotations

import torch


def padded_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      kept: torch.Tensor) -> dict[str, torch.Tensor]:
    """boxes [B, D, 4], scores [B, D], labels [B, D] best first, kept [B, D] bool with the kept slots
    first in each image -> the padded detections, empty slots zeroed."""
    return {"boxes": boxes * kept.unsqueeze(-1), "scores": scores * kept, "labels": labels * kept,
            "num": kept.sum(dim=1)}


def split_detections(detections: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Padded detections -> B dicts {boxes [K, 4], scores [K], labels [K]} (views; one host sync)."""
    counts = detections["num"].tolist()
    return [{key: detections[key][index, :count] for key in ("boxes", "scores", "labels")}
            for index, count in enumerate(counts)]


def to_original_pixels(boxes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """boxes [B, D, 4] xyxy in resized pixels, scales [B, 2] (sx, sy) in the boxes' dtype, with resized =
    original * scale -> the boxes in original pixels. Tracing keeps it; the caller casts `scales` (once,
    where it uses them for more), so that an exported graph holds one cast."""
    return boxes / scales.repeat(1, 2).unsqueeze(1)
