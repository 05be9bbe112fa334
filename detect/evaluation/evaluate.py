"""Run a detector over a loader and score its detections (VOC / COCO mAP).

Works under torch.distributed: each rank runs its shard of the loader (a DistributedSampler), and
the evaluator gathers every rank's images before computing the metrics (the same on every rank).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from detect.data.dataset import skipped_in
from detect.detections.predict import predict
from detect.evaluation.coco import DEFAULT_COCO_BACKEND
from detect.evaluation.evaluator import DetectionEvaluator
from detect.metric_names import HEADLINE_ORDER

GT_KEYS = ("labels", "difficult", "iscrowd", "image_id", "orig_size", "skipped")


def ground_truth_in_original_pixels(targets: Sequence[dict]) -> list[dict]:
    """Transformed targets (boxes in resized pixels, `scale` = (sx, sy)) -> evaluator ground truths."""
    ground_truths = []
    for target in targets:
        scale = torch.as_tensor(target["scale"], dtype=torch.float32).reshape(2)
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4) / scale.repeat(2)
        num = boxes.shape[0]
        gt = {"boxes": boxes}
        for key in GT_KEYS:
            if key in target:
                gt[key] = target[key]
        gt.setdefault("difficult", torch.zeros(num, dtype=torch.bool))
        gt.setdefault("iscrowd", torch.zeros(num, dtype=torch.bool))
        ground_truths.append(gt)
    return ground_truths


@torch.no_grad()
def run_detector(model: nn.Module, loader, device: torch.device, autocast=None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """Yields (detections, ground truths) per batch, both lists of per-image dicts in original pixels
    on the host; detections from detect.detections.predict (`mean` / `std`: the model's input.mean /
    input.std, for loaders that send uint8 pixels; see detect.data.normalize)."""
    was_training = model.training
    model.eval()
    try:
        for images, targets in loader:
            detections = predict(model, images, targets, device, mean, std, autocast)
            detections = [{key: value.cpu() for key, value in det.items()} for det in detections]
            yield detections, ground_truth_in_original_pixels(targets)
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, loader, class_names: Sequence[str], device: torch.device,
             metrics="voc07", iou_thresh: float = 0.5, autocast=None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             coco_backend: str = DEFAULT_COCO_BACKEND) -> dict:
    """The evaluator's results dict (see detect.evaluation.evaluator), gathered over all ranks;
    `mean` / `std` normalize uint8 batches as in run_detector. results["skipped"]: the (file, message)
    of images this rank's loader skipped under data.on_error: skip."""
    evaluator = DetectionEvaluator(class_names, metrics=metrics, iou_thresh=iou_thresh, coco_backend=coco_backend)
    skipped = []
    for detections, ground_truths in run_detector(model, loader, device, autocast, mean, std):
        evaluator.process(detections, ground_truths)
        skipped.extend(skipped_in(ground_truths))
    evaluator.synchronize()
    return {**evaluator.evaluate(), "skipped": skipped}


def headline_map(results: dict) -> float | None:
    """The one number used to pick best.pt: VOC07 mAP, else VOC12, else COCO AP50 (HEADLINE_ORDER)."""
    for name in HEADLINE_ORDER:
        if name in results:
            return results[name].get("AP50") if name == "coco" else results[name]["map"]
    return None
