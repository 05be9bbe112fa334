"""Detections as every detector's `postprocess` returns them: fixed-shape tensors that tracing keeps.

    {"boxes"  float32 [B, D, 4]  xyxy in the original image's pixels,
     "scores" float32 [B, D]     descending per image,
     "labels" int64   [B, D]     1..C,
     "num"    int64   [B]        how many of the D slots of each image hold a detection}

Slots past `num` are zero (box 0, score 0, label 0). D is the detector's `detections_per_img` (or
fewer where it has fewer candidates). Per-image lists are cut from this at the edges
(`split_detections`): evaluation, `Detector`, the benchmarks; ONNX export returns it as it is.
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
