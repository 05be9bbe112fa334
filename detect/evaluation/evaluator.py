"""`DetectionEvaluator`: collect per-image predictions and ground truth, then compute VOC and COCO mAP.

    evaluator = DetectionEvaluator(class_names, metrics="all")
    for batch ...: evaluator.process(predictions, ground_truths)
    evaluator.synchronize()           # under torch.distributed: every rank gets all images
    results = evaluator.evaluate()

predictions: list of per-image {boxes float [N, 4] xyxy original pixels, scores float [N], labels int [N] 1..C}
ground_truths: list of per-image {boxes [M, 4], labels [M], difficult bool [M], iscrowd bool [M],
    image_id (str or int), orig_size (h, w)}; torch tensors or numpy arrays.
evaluate() -> {"voc07": {"map": float|None, "ap": {class: float|None}, "num_gt": {class: int}},
               "voc12": {...same...}, "coco": {"AP": ..., "AP50": ..., ... see detect.evaluation.coco},
               "num_images": int}
An image id seen twice (a distributed sampler pads its last batch with repeats) counts once. Images are
evaluated in image-id order, so ties in score break the same way on one process or many.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from detect.evaluation.coco import (
    DEFAULT_COCO_BACKEND,
    coco_evaluation,
    coco_ground_truth,
    predictions_to_coco_results,
    stats_dict,
    summary_table,
)
from detect.evaluation.coco_eval import CocoBoxEvaluation
from detect.evaluation.voc import ClassCurve, VOCInputs, ap_from_curves, class_curves
from detect.metric_names import METRICS as METRIC_REGISTRY
from detect.metric_names import VOC_METRICS
from detect.tables import markdown_table

METRICS = tuple(METRIC_REGISTRY)  # detect/metric_names.py


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """"all", one name, or several names -> a tuple of names from METRICS."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if "all" in names:
        return METRICS
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)} or all")
    return tuple(dict.fromkeys(names))


def to_numpy(value, dtype=None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def image_id_of(value):
    """A tensor or numpy scalar image id -> a plain int (strings stay strings)."""
    if isinstance(value, torch.Tensor):
        return int(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


class DetectionEvaluator:
    """reset / process / evaluate over VOC07, VOC12 and COCO metrics (see the module docstring).

    coco_gt: an existing pycocotools COCO (a COCO dataset's own annotations, for official area ranges);
    then ground-truth image ids must be its image ids and label_to_category_id maps labels (int array)
    to its category ids. Without it the COCO metric uses ground truth built from the processed images.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        metrics: str | Iterable[str] = ("voc07",),
        iou_thresh: float = 0.5,
        coco_gt=None,
        label_to_category_id: Callable[[np.ndarray], np.ndarray] | None = None,
        print_coco_summary: bool = False,
        coco_backend: str = DEFAULT_COCO_BACKEND,
    ) -> None:
        self.class_names = list(class_names)
        self.metrics = parse_metrics(metrics)
        self.iou_thresh = iou_thresh
        self.coco_gt = coco_gt
        self.label_to_category_id = label_to_category_id
        self.print_coco_summary = print_coco_summary
        self.coco_backend = coco_backend
        self.reset()

    def reset(self) -> None:
        self._images: list[tuple] = []  # (image_id, prediction dict, ground-truth dict), numpy

    def process(self, predictions: Sequence[dict], ground_truths: Sequence[dict]) -> None:
        if len(predictions) != len(ground_truths):
            raise ValueError(f"{len(predictions)} predictions for {len(ground_truths)} ground truths")
        for prediction, target in zip(predictions, ground_truths):
            num_objects = len(to_numpy(target["labels"]).reshape(-1))
            pred = {
                "boxes": to_numpy(prediction["boxes"], np.float32).reshape(-1, 4),
                "scores": to_numpy(prediction["scores"], np.float32).reshape(-1),
                "labels": to_numpy(prediction["labels"], np.int64).reshape(-1),
            }
            gt = {
                "boxes": to_numpy(target["boxes"], np.float32).reshape(-1, 4),
                "labels": to_numpy(target["labels"], np.int64).reshape(-1),
                "difficult": to_numpy(target.get("difficult", np.zeros(num_objects, bool)), bool).reshape(-1),
                "iscrowd": to_numpy(target.get("iscrowd", np.zeros(num_objects, bool)), bool).reshape(-1),
                "orig_size": to_numpy(target["orig_size"], np.int64).reshape(2),
            }
            self._images.append((image_id_of(target["image_id"]), pred, gt))

    # -- distributed ------------------------------------------------------------------------------

    def state(self) -> list[tuple]:
        """What this evaluator has collected (picklable), for `merge` on another process."""
        return list(self._images)

    def merge(self, states: Iterable[list[tuple]]) -> None:
        """Adds the images of other evaluators' `state()`s."""
        for state in states:
            self._images.extend(state)

    def synchronize(self) -> None:
        """Under an initialised torch.distributed group: every rank ends up with all ranks' images."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        world_size = torch.distributed.get_world_size()
        if world_size == 1:
            return
        gathered: list = [None] * world_size
        torch.distributed.all_gather_object(gathered, self.state())
        self.reset()
        self.merge(gathered)

    # -- results ------------------------------------------------------------------------------------

    def images(self) -> list[tuple]:
        """The collected (image_id, prediction, ground truth), each image id once (the first seen),
        sorted by image id: equal scores then rank the same however images were split over batches
        or ranks (when ids are of mixed types, the order of arrival is kept)."""
        seen, unique = set(), []
        for entry in self._images:
            if entry[0] not in seen:
                seen.add(entry[0])
                unique.append(entry)
        try:
            return sorted(unique, key=lambda entry: entry[0])
        except TypeError:
            return unique

    def voc_inputs(self) -> VOCInputs:
        images = self.images()
        preds = [pred for _, pred, _ in images]
        gts = [gt for _, _, gt in images]
        det_counts = [len(p["scores"]) for p in preds]
        gt_counts = [len(g["labels"]) for g in gts]
        index = np.arange(len(images), dtype=np.int64)
        return VOCInputs(
            det_image=np.repeat(index, det_counts),
            det_boxes=_concat([p["boxes"] for p in preds], (0, 4), np.float32),
            det_scores=_concat([p["scores"] for p in preds], (0,), np.float32),
            det_labels=_concat([p["labels"] for p in preds], (0,), np.int64),
            gt_image=np.repeat(index, gt_counts),
            gt_boxes=_concat([g["boxes"] for g in gts], (0, 4), np.float32),
            gt_labels=_concat([g["labels"] for g in gts], (0,), np.int64),
            gt_ignore=_concat([g["difficult"] | g["iscrowd"] for g in gts], (0,), bool),
        )

    def class_curves(self) -> list[ClassCurve]:
        """Precision-recall curve of each class at `iou_thresh` (index 0 is class 1)."""
        return class_curves(self.voc_inputs(), len(self.class_names), self.iou_thresh)

    def evaluate(self) -> dict:
        results: dict = {"num_images": len(self.images())}
        if any(name in self.metrics for name in VOC_METRICS):
            curves = self.class_curves()
            num_gt = {name: curve.num_gt for name, curve in zip(self.class_names, curves)}
            for name in VOC_METRICS:
                if name in self.metrics:
                    aps, mean_ap = ap_from_curves(curves, METRIC_REGISTRY[name].eleven_point)
                    results[name] = {"map": mean_ap, "ap": dict(zip(self.class_names, aps)), "num_gt": num_gt}
        if "coco" in self.metrics:
            evaluation = self.evaluate_coco()
            results["coco"] = stats_dict(evaluation.stats)
            # Per class: AP at IoU .50:.95, all areas, 100 detections (None: no ground truth of it).
            results["coco_ap"] = {name: (float(ap) if ap >= 0 else None)
                                  for name, ap in zip(self.class_names, evaluation.per_class_ap)}
        return results

    def evaluate_coco(self) -> CocoBoxEvaluation:
        images = self.images()
        predictions = [pred for _, pred, _ in images]
        if self.coco_gt is None:
            coco_gt = coco_ground_truth([gt for _, _, gt in images], self.class_names)
            results = predictions_to_coco_results(predictions, range(1, len(images) + 1))
            evaluation = coco_evaluation(coco_gt, results, backend=self.coco_backend)
        else:
            image_ids = [image_id for image_id, _, _ in images]
            results = predictions_to_coco_results(predictions, image_ids, self.label_to_category_id)
            labels = np.arange(1, len(self.class_names) + 1)
            category_ids = self.label_to_category_id(labels) if self.label_to_category_id is not None else labels
            evaluation = coco_evaluation(self.coco_gt, results, image_ids, category_ids, backend=self.coco_backend)
        if self.print_coco_summary:
            print(summary_table(evaluation.stats))
        return evaluation


def evaluator_for_dataset(dataset, metrics, iou_thresh: float = 0.5,
                          coco_backend: str = DEFAULT_COCO_BACKEND) -> DetectionEvaluator:
    """An evaluator for a dataset's split (detect/data's datasets: `class_names`; COCO data also
    `coco` and `category_map`): COCO data is scored against its own annotation file (official areas)."""
    coco = getattr(dataset, "coco", None)
    category_map = getattr(dataset, "category_map", None)
    if coco is not None and category_map is not None:
        return DetectionEvaluator(dataset.class_names, metrics, iou_thresh, coco_gt=coco,
                                  label_to_category_id=category_map.labels_to_category_ids, coco_backend=coco_backend)
    return DetectionEvaluator(dataset.class_names, metrics, iou_thresh, coco_backend=coco_backend)


def _concat(arrays: list[np.ndarray], empty_shape: tuple, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(empty_shape, dtype)


def format_results(results: dict, class_names: Sequence[str] | None = None) -> str:
    """The evaluate() dict as text: a markdown table of per-class AP (one column per VOC metric), the
    mAP row, and the COCO numbers. A class without ground truth shows "no gt"."""
    voc_names = [name for name in VOC_METRICS if name in results]
    lines = []
    if voc_names:
        first = results[voc_names[0]]
        classes = list(class_names) if class_names is not None else list(first["ap"])
        header = ["class", "gt"] + [f"AP {name} (%)" for name in voc_names]
        rows = [[name, str(first["num_gt"].get(name, 0))] + [_fmt(results[v]["ap"].get(name)) for v in voc_names]
                for name in classes]
        rows.append(["**mAP**", str(sum(first["num_gt"].values()))] + [_fmt(results[v]["map"]) for v in voc_names])
        lines += markdown_table([header, *rows])
    if "coco" in results:
        coco = results["coco"]
        lines.append("")
        lines.append("COCO (%)  " + "  ".join(f"{name} {_fmt(value)}" for name, value in coco.items()))
    lines.append(f"({results.get('num_images', 0)} images)")
    return "\n".join(lines).lstrip("\n")


def _fmt(value) -> str:
    return "no gt" if value is None else f"{100 * value:.2f}"
