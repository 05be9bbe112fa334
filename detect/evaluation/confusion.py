"""Confusion matrix of a detector at one IoU threshold, with background as class 0.

Detections above `score_threshold` are matched to ground truth of any class, one to one, greedily by IoU
over all images at once (pairs sorted by IoU, highest first; each detection and each object used once).
Row = true label, column = predicted label, index 0 = background:
- a matched pair adds to [gt label, predicted label] (the diagonal when the class is right);
- an unmatched detection adds to [0, predicted label] (a false detection on background);
- an unmatched object adds to [gt label, 0] (a missed object).
Difficult and crowd objects take part in matching (so detections of them are not counted as false)
but are not counted themselves.
"""

from __future__ import annotations

import numpy as np

from detect.evaluation.pairs import pairs_by_key
from detect.evaluation.voc import VOCInputs
from detect.iou import paired_iou

# Detections scoring at least this enter the confusion matrix of `detect eval --plots`: the matrix
# shows what a deployed detector would report, not the low-score tail that AP integrates over.
CONFUSION_SCORE_THRESHOLD = 0.25

def confusion_matrix(
    inputs: VOCInputs, num_classes: int, iou_thresh: float = 0.5, score_threshold: float = CONFUSION_SCORE_THRESHOLD
) -> np.ndarray:
    """-> int64 [C + 1, C + 1] counts (rows: true label, columns: predicted label, 0: background)."""
    keep = inputs.det_scores >= score_threshold
    det_image, det_boxes, det_labels = inputs.det_image[keep], inputs.det_boxes[keep], inputs.det_labels[keep]
    det_index, gt_index = pairs_by_key(det_image, inputs.gt_image)
    ious = paired_iou(det_boxes[det_index], inputs.gt_boxes[gt_index])
    close = ious >= iou_thresh
    det_index, gt_index, ious = det_index[close], gt_index[close], ious[close]
    by_iou = np.argsort(-ious, kind="stable")
    det_index, gt_index = det_index[by_iou], gt_index[by_iou]
    # Highest IoU first: keep each detection's best pair, then each object's best remaining pair.
    _, first_of_det = np.unique(det_index, return_index=True)
    first_of_det = np.sort(first_of_det)
    det_index, gt_index = det_index[first_of_det], gt_index[first_of_det]
    _, first_of_gt = np.unique(gt_index, return_index=True)
    det_index, gt_index = det_index[first_of_gt], gt_index[first_of_gt]

    size = num_classes + 1
    matrix = np.zeros((size, size), dtype=np.int64)
    counted = ~inputs.gt_ignore[gt_index]
    np.add.at(matrix, (inputs.gt_labels[gt_index[counted]], det_labels[det_index[counted]]), 1)
    det_matched = np.zeros(len(det_labels), dtype=bool)
    det_matched[det_index] = True
    np.add.at(matrix, (0, det_labels[~det_matched]), 1)
    gt_missed = np.ones(len(inputs.gt_labels), dtype=bool)
    gt_missed[gt_index] = False
    gt_missed &= ~inputs.gt_ignore
    np.add.at(matrix, (inputs.gt_labels[gt_missed], 0), 1)
    return matrix
