"""How well a config's reference boxes (RPN anchors, SSD default boxes) reach a dataset's boxes.

Training matches each ground-truth box to the reference boxes it overlaps: RPN anchors with IoU >=
rpn.fg_iou_thresh, SSD default boxes with IoU >= ssd.iou_thresh. A box whose best reference box stays
below that IoU gets only its single best one as a positive (or, for SSD, that one at a poor fit), so
the model learns it badly: what `detect data stats` measures and warns about.

    fit = anchor_fit(model_cfg, input_cfg, boxes_per_image, input_sizes)
        boxes_per_image: [float32 [Ni, 4] xyxy at the model's input size, ...]
        input_sizes:     [(padded height, padded width), ...], one per image
        -> AnchorFit: best_iou float32 [N] (images in order), scale_ratio float32 [N] (the box's
           sqrt(area) over its best reference box's), match_iou, keys (what shapes the boxes)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass
class AnchorFit:
    best_iou: np.ndarray  # float32 [N]: each box's best IoU with a reference box
    scale_ratio: np.ndarray  # float32 [N]: sqrt(box area) / sqrt(area of that best reference box)
    match_iou: float  # the IoU training counts as a match
    keys: str  # the config keys that shape the reference boxes
    kind: str  # "RPN anchors" or "default boxes"

    @property
    def reached(self) -> np.ndarray:
        """bool [N]: boxes whose best reference box reaches the matching IoU."""
        return self.best_iou >= self.match_iou - 1e-6

    @property
    def share(self) -> float:
        return float(self.reached.mean()) if len(self.best_iou) else 1.0


def reference_model(model_cfg, input_cfg, num_classes: int):
    """The config's detector with its shapes only (no starting weights read, parameters on the meta
    device), in eval mode; its reference boxes are computed on the CPU."""
    from detect.models.build import build_model

    model_cfg = model_cfg.model_copy(update={"pretrained": "none"})
    return build_model(model_cfg, input_cfg, num_classes, None).to("meta").eval()


def anchor_fit(model_cfg, input_cfg, boxes_per_image: list[np.ndarray], input_sizes: list[tuple[int, int]],
               num_classes: int = 1) -> AnchorFit:
    """See the module docstring. Reference boxes are made once per padded input size."""
    model = reference_model(model_cfg, input_cfg, num_classes)
    cache: dict[tuple[int, int], tuple[torch.Tensor, float]] = {}
    best_ious, ratios = [], []
    match_iou = None
    for boxes, size in zip(boxes_per_image, input_sizes):
        if size not in cache:
            cache[size] = model.reference_boxes(*size)
        references, match_iou = cache[size]
        if len(boxes) == 0:
            continue
        gt = torch.as_tensor(np.asarray(boxes, np.float32))
        best_iou, best = box_iou(gt, references).max(dim=1)
        best_ious.append(best_iou.numpy())
        ratios.append((_side(gt) / _side(references[best]).clamp(min=1e-6)).numpy())
    if match_iou is None:
        match_iou = model.reference_boxes(input_cfg.size, input_cfg.size)[1]
    return AnchorFit(_concat(best_ious), _concat(ratios), float(match_iou), model.reference_box_keys,
                     model.reference_box_name)


def _side(boxes: torch.Tensor) -> torch.Tensor:
    """sqrt(area) of xyxy boxes [N, 4]."""
    return ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
