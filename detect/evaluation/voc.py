"""Pascal VOC average precision: VOC2007 11-point and VOC2010+ all-point interpolation.

Follows the VOC devkit's rules (VOCevaldet.m):
- detections of a class are ranked by score, highest first; ties keep their input order (stable sort),
  so the result is deterministic;
- each detection is compared with the ground truth of its image and class and takes the box of highest
  IoU (the first on ties), whether or not that box is already taken; IoU >= `iou_thresh` is a match;
- a match with a `difficult` (or crowd) object counts neither as true nor as false positive;
- the first (highest ranked) match of an object is a true positive, later ones are duplicates: false
  positives; everything else is a false positive;
- recall is over the objects that are not difficult; a class without such objects has no AP (None)
  and is left out of the mean.

Boxes are the pipeline's xyxy in 0-based pixel edges (VOC corners are loaded with xmin-1, ymin-1), so the
plain IoU here equals the devkit's "+1" IoU on its 1-based inclusive corners.

Because the chosen box does not depend on which boxes are taken, matching is vectorised: a join of all
detections with the ground truth of the same (image, class), one IoU per pair, a segmented argmax, and
"first occurrence in ranking order" for duplicates. No Python loop over images or detections.

Inputs are flat arrays over all images (see `VOCInputs`); `detect.evaluation.evaluator` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.evaluation.pairs import best_gt_per_detection, pairs_by_key
from detect.iou import paired_iou

# The VOC2007 11 recall points 0, 0.1, ..., 1, written as k/10 so that a recall of exactly 3/10
# reaches the point 0.3 (np.arange(0, 1.1, 0.1) gives 0.30000000000000004).
ELEVEN_RECALL_POINTS = np.arange(11) / 10.0


@dataclass
class VOCInputs:
    """Detections and ground truth of many images, flattened.

    det_image int64 [D] (image index), det_boxes float [D, 4] xyxy, det_scores float [D],
    det_labels int64 [D] (1..C); gt_image int64 [G], gt_boxes float [G, 4], gt_labels int64 [G],
    gt_ignore bool [G] (difficult or crowd: neither true nor false positive).
    """

    det_image: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_labels: np.ndarray
    gt_image: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_ignore: np.ndarray


@dataclass
class ClassCurve:
    """Precision and recall after each counted detection of one class, in ranking order.

    precision, recall float64 [K]; scores float [K] (the detection scores); num_gt: objects that count
    (not difficult). Detections matched to difficult objects are left out (they change neither).
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    num_gt: int


def match_detections(inputs: VOCInputs, iou_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks all detections by (class, score desc) and marks each as true positive or ignored.

    -> (order int64 [D]: detection indices grouped by class, each group by descending score (stable);
        is_tp bool [D] and is_ignored bool [D], both in that order. The rest are false positives.)
    """
    num_classes_key = int(max(inputs.det_labels.max(initial=0), inputs.gt_labels.max(initial=0))) + 1
    # lexsort is stable: equal scores keep the input order.
    order = np.lexsort((-inputs.det_scores.astype(np.float64), inputs.det_labels))
    det_image = inputs.det_image[order]
    det_labels = inputs.det_labels[order]
    det_keys = det_image.astype(np.int64) * num_classes_key + det_labels
    gt_keys = inputs.gt_image.astype(np.int64) * num_classes_key + inputs.gt_labels

    det_index, gt_index = pairs_by_key(det_keys, gt_keys)
    ious = paired_iou(inputs.det_boxes[order][det_index], inputs.gt_boxes[gt_index])
    best_gt, best_iou = best_gt_per_detection(det_index, gt_index, ious, len(order))

    matched = best_iou >= iou_thresh
    is_ignored = np.zeros(len(order), dtype=bool)
    is_ignored[matched] = inputs.gt_ignore[best_gt[matched]]
    candidates = np.flatnonzero(matched & ~is_ignored)
    # The first detection (in ranking order) of each object is the true positive; later ones are duplicates.
    _, first = np.unique(best_gt[candidates], return_index=True)
    is_tp = np.zeros(len(order), dtype=bool)
    is_tp[candidates[first]] = True
    return order, is_tp, is_ignored


def class_curves(inputs: VOCInputs, num_classes: int, iou_thresh: float = 0.5) -> list[ClassCurve]:
    """Precision/recall curves of classes 1..num_classes (list index 0 is class 1)."""
    order, is_tp, is_ignored = match_detections(inputs, iou_thresh)
    counted = ~is_ignored
    labels = inputs.det_labels[order][counted]
    scores = inputs.det_scores[order][counted]
    tp = is_tp[counted]
    num_gt = np.bincount(inputs.gt_labels[~inputs.gt_ignore], minlength=num_classes + 1)
    bounds = np.searchsorted(labels, np.arange(1, num_classes + 2))  # labels are grouped ascending
    curves = []
    for label in range(1, num_classes + 1):
        start, end = bounds[label - 1], bounds[label]
        tp_cum = np.cumsum(tp[start:end], dtype=np.float64)
        rank = np.arange(1, end - start + 1, dtype=np.float64)
        npos = int(num_gt[label])
        recall = tp_cum / npos if npos > 0 else np.zeros_like(tp_cum)
        curves.append(ClassCurve(tp_cum / rank, recall, scores[start:end], npos))
    return curves


def average_precision(precision: np.ndarray, recall: np.ndarray, eleven_point: bool = False) -> float:
    """Area under one class's precision-recall curve (recall non-decreasing).

    eleven_point: VOC2007, the mean over recall r in {0, 0.1, ..., 1} of the highest precision at a
    recall >= r (0 where none). Otherwise VOC2010+: the exact area under the curve after making
    precision non-increasing (each point takes the highest precision at any higher recall).
    """
    if len(precision) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # highest precision at this or higher recall
    if eleven_point:
        first_reaching = np.searchsorted(recall, ELEVEN_RECALL_POINTS, side="left")
        reached = first_reaching < len(recall)
        values = np.where(reached, envelope[np.minimum(first_reaching, len(recall) - 1)], 0.0)
        return float(values.mean())
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * envelope))


def ap_from_curves(curves: list[ClassCurve], eleven_point: bool) -> tuple[list[float | None], float | None]:
    aps = [average_precision(c.precision, c.recall, eleven_point) if c.num_gt > 0 else None for c in curves]
    present = [ap for ap in aps if ap is not None]
    return aps, (float(np.mean(present)) if present else None)
