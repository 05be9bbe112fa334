"""Vectorised pairing of detections with ground truth over many images at once.

Both metrics and the confusion matrix compare each detection with the ground-truth boxes that share
its key (the image, or the image and the class). Instead of a Python loop over images we join the
two sets on that key with a sort and `searchsorted`, and compute one IoU per (detection, gt) pair.
"""

from __future__ import annotations

import numpy as np


def pairs_by_key(det_keys: np.ndarray, gt_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, gt) index pairs whose int keys are equal.

    det_keys int [D], gt_keys int [G] -> (det_index int64 [P], gt_index int64 [P]); pairs are ordered
    by detection, and for one detection by gt index (ascending), so a first maximum is the lowest gt.
    """
    gt_order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[gt_order]
    starts = np.searchsorted(sorted_keys, det_keys, side="left")
    ends = np.searchsorted(sorted_keys, det_keys, side="right")
    counts = ends - starts
    det_index = np.repeat(np.arange(len(det_keys), dtype=np.int64), counts)
    # Position of each pair inside its detection's run of gt: 0, 1, ... counts-1.
    run_offsets = np.arange(len(det_index), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    gt_index = gt_order[np.repeat(starts, counts) + run_offsets].astype(np.int64)
    return det_index, gt_index


def best_gt_per_detection(
    det_index: np.ndarray, gt_index: np.ndarray, ious: np.ndarray, num_dets: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection its highest-IoU gt (the first, i.e. lowest index, on ties) and that IoU.

    Pairs as from `pairs_by_key` (grouped by detection). -> (best_gt int64 [D] (-1: none),
    best_iou float64 [D] (-1 where a detection has no gt of its key)).
    """
    best_iou = np.full(num_dets, -1.0)
    best_gt = np.full(num_dets, -1, dtype=np.int64)
    if len(det_index) == 0:
        return best_gt, best_iou
    # Pairs of one detection are contiguous: a segmented maximum over the runs.
    run_starts = np.flatnonzero(np.r_[True, det_index[1:] != det_index[:-1]])
    best_iou[det_index[run_starts]] = np.maximum.reduceat(ious, run_starts)
    is_best = ious == best_iou[det_index]
    # Pairs are ordered by detection; the first best pair of each detection wins.
    best_pairs = np.flatnonzero(is_best)
    dets_with_best, first = np.unique(det_index[best_pairs], return_index=True)
    best_gt[dets_with_best] = gt_index[best_pairs[first]]
    return best_gt, best_iou
