"""COCO box AP and AR as pycocotools' COCOeval computes them, vectorised.

    evaluation = evaluate_coco_boxes(dataset, results, image_ids, category_ids)
    evaluation.stats        float64 [12]: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
                            (-1 where pycocotools reports -1)
    evaluation.precision    float64 [T=10, R=101, K, A=4, M=3]   as COCOeval.eval["precision"]
    evaluation.recall       float64 [T, K, A, M]                  as COCOeval.eval["recall"]
    evaluation.per_class_ap float64 [K]: AP (IoU .50:.95, all areas, 100 detections) per category, -1: none

`dataset` is a COCO ground-truth dict (images, annotations, categories); `results` COCO results entries
(image_id, category_id, bbox xywh, score). Why our own: pycocotools matches every (image, category,
area range) in its own Python call. Here the IoUs of every detection with the ground truth of its image
and category are computed as one flat array, for a group of categories at a time (at most
PAIRS_PER_CHUNK pairs, or one category's); detections that reach no ground truth at IoU 0.5 are
unmatched at every threshold and leave the matching; the rest are matched for all area ranges and IoU
thresholds together, one detection rank at a time, in groups of (image, category) pairs of similar
ground-truth counts (docs/evaluation.md has the timing against pycocotools and faster-coco-eval).

Every rule is pycocotools' (2.0), reproduced operation for operation so that the numbers agree to the
last bits (tests compare them on many sets):
- ground truth: `area` from the annotation, crowd regions ignored (`iscrowd`), and so is any box whose
  area is outside the range; within an image and category, file order, the ignored ones moved last;
- detections: area w * h, sorted by score with ties in results order, the first 100 per image and
  category kept; IoU as pycocotools' bbIou (a crowd region's IoU is the intersection over the
  detection's area);
- matching, per IoU threshold t and detection in score order: the best-IoU ground truth of those
  not yet matched (crowd regions may match many) with IoU >= min(t, 1 - 1e-10), ties to the later one,
  a non-ignored one first; a detection matched to an ignored one, or unmatched and outside the area
  range, is ignored;
- accumulation: per category, area range and detection limit, detections of all images (image id
  order) sorted by score (stable), precision made monotone, read at 101 recall points.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Sequence

import numpy as np

from detect.errors import DataError
from detect.iou import coco_paired_iou
from detect.progress import bars_enabled

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array([[0, 1e5 ** 2], [0, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]], dtype=np.float64)
MAX_DETECTIONS = (1, 10, 100)


@dataclass
class CocoBoxEvaluation:
    """The arrays of the module docstring, for `category_ids` (sorted) on `image_ids` (sorted)."""

    precision: np.ndarray
    recall: np.ndarray
    stats: np.ndarray
    per_class_ap: np.ndarray
    image_ids: list
    category_ids: list


def evaluate_coco_boxes(dataset: dict, results: Sequence[dict], image_ids: Sequence | None = None,
                        category_ids: Sequence | None = None, progress: bool = False) -> CocoBoxEvaluation:
    """pycocotools' evaluate + accumulate + summarize for boxes (see the module docstring)."""
    image_ids = sorted(image_ids if image_ids is not None else [image["id"] for image in dataset["images"]])
    category_ids = sorted(category_ids if category_ids is not None else [c["id"] for c in dataset["categories"]])
    known_images = {image["id"] for image in dataset["images"]}
    strangers = {entry["image_id"] for entry in results} - known_images
    if strangers:
        raise DataError(f"detections for image ids not in the ground truth (first: {sorted(map(str, strangers))[0]})")
    image_index = {image_id: index for index, image_id in enumerate(image_ids)}
    category_index = {category_id: index for index, category_id in enumerate(category_ids)}
    gt = _table(dataset["annotations"], image_index, category_index, _ground_truth_values, len(image_ids))
    dt = _table(results, image_index, category_index, _detection_values, len(image_ids), by_score=True)
    dt = {name: column[dt["rank"] < MAX_DETECTIONS[-1]] for name, column in dt.items()}

    K = len(category_ids)
    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), K, len(AREA_RANGES), len(MAX_DETECTIONS))
    precision, recall = -np.ones(shape), -np.ones((shape[0], *shape[2:]))
    gt_bounds = np.searchsorted(gt["category"], np.arange(K + 1))
    dt_bounds = np.searchsorted(dt["category"], np.arange(K + 1))
    chunks = _category_chunks(gt, dt, K, len(image_ids))
    if progress and bars_enabled():
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="COCO AP", unit="chunk")
    for first, last in chunks:  # categories first..last - 1, their IoUs held together
        part_gt = {name: column[gt_bounds[first]:gt_bounds[last]] for name, column in gt.items()}
        part_dt = {name: column[dt_bounds[first]:dt_bounds[last]] for name, column in dt.items()}
        true_positive, ignored, num_positives = _match(part_gt, part_dt, K)
        for k in range(first, last):
            rows = slice(dt_bounds[k] - dt_bounds[first], dt_bounds[k + 1] - dt_bounds[first])
            if gt_bounds[k] < gt_bounds[k + 1] or rows.start < rows.stop:
                _accumulate(part_dt["score"][rows], part_dt["rank"][rows], true_positive[:, :, rows],
                            ignored[:, :, rows], num_positives[k], precision[:, :, k], recall[:, k])
    stats = _summarize(precision, recall)
    per_class = np.array([mean_valid(precision[:, :, k, 0, -1]) for k in range(len(category_ids))])
    return CocoBoxEvaluation(precision, recall, stats, per_class, image_ids, category_ids)


# ---------------------------------------------------------------------------------------------------
# Tables: one row per box, sorted by (category, image), then file order (ground truth) or score order
# (detections, ties in results order)


def _ground_truth_values(entries: Sequence[dict]) -> np.ndarray:
    """float64 [N, 7]: x, y, w, h, area (the annotation's), crowd, id != 0."""
    return np.array([[*entry["bbox"], entry["area"], bool(entry.get("iscrowd", 0)), entry["id"] != 0]
                     for entry in entries], dtype=np.float64).reshape(-1, 7)


def _detection_values(entries: Sequence[dict]) -> np.ndarray:
    """float64 [N, 6]: x, y, w, h, area (w * h, as pycocotools' loadRes), score."""
    boxes = np.array(list(map(itemgetter("bbox"), entries)), dtype=np.float64).reshape(-1, 4)
    scores = np.fromiter(map(itemgetter("score"), entries), np.float64, len(entries)).reshape(-1, 1)
    return np.concatenate([boxes, boxes[:, 2:3] * boxes[:, 3:4], scores], axis=1)


def _table(entries: Sequence[dict], image_index: dict, category_index: dict, values_of, num_images: int,
           by_score: bool = False) -> dict[str, np.ndarray]:
    """Columns image, category, key (category * images + image), rank (position within the key),
    box [N, 4], area, and crowd / id_nonzero (ground truth) or score (detections); entries of other
    images or categories are left out."""
    image = np.fromiter(map(image_index.get, map(itemgetter("image_id"), entries), repeat(-1)), np.int64, len(entries))
    category = np.fromiter(map(category_index.get, map(itemgetter("category_id"), entries), repeat(-1)), np.int64,
                           len(entries))
    values = values_of(entries)
    keep = np.flatnonzero((image >= 0) & (category >= 0))
    key = category[keep] * num_images + image[keep]
    order = np.lexsort((keep, -values[keep, 5], key) if by_score else (keep, key))
    rows, key = keep[order], key[order]
    starts = np.searchsorted(key, key)  # the first row of each row's key
    table = {"image": image[rows], "category": category[rows], "key": key, "rank": np.arange(len(rows)) - starts,
             "box": values[rows, :4], "area": values[rows, 4]}
    if by_score:
        table["score"] = values[rows, 5]
    else:
        table["crowd"], table["id_nonzero"] = values[rows, 5] > 0, values[rows, 6] > 0
    return table


# ---------------------------------------------------------------------------------------------------
# Matching

# The most (detection, ground truth) pairs whose IoUs are held at once (with their matching state, about
# 100 bytes each); a single category with more is held whole.
PAIRS_PER_CHUNK = 2_000_000


def _category_chunks(gt: dict, dt: dict, num_categories: int, num_images: int) -> list[tuple[int, int]]:
    """Consecutive category ranges [first, last) whose (detection, ground truth) pairs of the same image
    stay under PAIRS_PER_CHUNK together (a category over it alone)."""
    keys = np.arange(num_categories * num_images)
    pairs = np.bincount(gt["key"], minlength=len(keys)) * np.bincount(dt["key"], minlength=len(keys))
    per_category = pairs.reshape(num_categories, num_images).sum(axis=1) + 1
    chunks, first, held = [], 0, 0
    for k, cost in enumerate(per_category):
        if held and held + cost > PAIRS_PER_CHUNK:
            chunks.append((first, k))
            first, held = k, 0
        held += cost
    return chunks + [(first, num_categories)] if num_categories else chunks


def _match(gt: dict, dt: dict, num_categories: int):
    """-> true_positive, ignored (bool [A, T, N] per detection row) and the ground truths not ignored
    per category and area range (int [K, A])."""
    A, T, N = len(AREA_RANGES), len(IOU_THRESHOLDS), len(dt["key"])
    low, high = AREA_RANGES[:, 0][:, None], AREA_RANGES[:, 1][:, None]
    gt_ignored = gt["crowd"][None] | (gt["area"][None] < low) | (gt["area"][None] > high)  # [A, M]
    num_positives = np.zeros((num_categories, A), np.int64)
    for a in range(A):
        num_positives[:, a] = np.bincount(gt["category"][~gt_ignored[a]], minlength=num_categories)

    pairs = np.union1d(gt["key"], dt["key"])
    gt_start = np.searchsorted(gt["key"], pairs)
    gt_count = np.searchsorted(gt["key"], pairs, side="right") - gt_start
    dt_pair = np.searchsorted(pairs, dt["key"])
    # Every detection with every ground truth of its pair, flat: entry e is (detection det[e], gt[e]).
    per_detection = gt_count[dt_pair]
    det = np.repeat(np.arange(N), per_detection)
    entry_start = np.concatenate([[0], np.cumsum(per_detection)])[:-1]
    gt_row = gt_start[dt_pair][det] + (np.arange(len(det)) - entry_start[det])
    iou = coco_paired_iou(dt["box"][det], gt["box"][gt_row], gt["crowd"][gt_row])
    relevant = np.zeros(N, bool)
    relevant[det[iou >= IOU_THRESHOLDS[0]]] = True

    matched = np.zeros((A, T, N), bool)
    match_ignored = np.zeros((A, T, N), bool)
    match_nonzero = np.zeros((A, T, N), bool)
    rows = np.flatnonzero(relevant)  # in (pair, rank) order
    groups = np.ceil(np.log2(np.maximum(gt_count[dt_pair[rows]], 1))).astype(np.int64)
    for group in np.unique(groups):
        group_rows = rows[groups == group]
        _match_group(group_rows, dt_pair[group_rows], entry_start, per_detection, iou, gt_start, gt_count, gt,
                     gt_ignored, matched, match_ignored, match_nonzero)
    outside = (dt["area"][None] < low) | (dt["area"][None] > high)  # [A, N]
    true_positive = matched & match_nonzero & ~match_ignored
    # pycocotools marks a match by the ground truth's id: one with id 0 reads as unmatched.
    ignored = match_ignored | (~(matched & match_nonzero) & outside[:, None])
    return true_positive, ignored, num_positives


def _match_group(rows, row_pair, entry_start, per_detection, iou, gt_start, gt_count, gt, gt_ignored,
                 matched, match_ignored, match_nonzero) -> None:
    """Greedy matching of detection `rows` (relevant ones, in (pair, rank) order) within their pairs,
    for every area range and threshold at once (pycocotools' order and tie rules)."""
    pairs, slot_of_row = np.unique(row_pair, return_inverse=True)
    first = np.searchsorted(row_pair, pairs)
    step_of_row = np.arange(len(rows)) - first[slot_of_row]  # the row's place among its pair's relevant ones
    count = np.bincount(slot_of_row, minlength=len(pairs))
    P, G, D = len(pairs), int(gt_count[pairs].max()), int(count.max())
    g = np.arange(G)
    gt_valid = g[None] < gt_count[pairs][:, None]  # [P, G]
    gt_rows = np.where(gt_valid, gt_start[pairs][:, None] + g[None], 0)
    crowd = gt["crowd"][gt_rows] & gt_valid
    nonzero = gt["id_nonzero"][gt_rows]
    A, T = gt_ignored.shape[0], len(IOU_THRESHOLDS)
    lanes_ignored = np.repeat(gt_ignored[:, gt_rows], T, axis=0)  # [A * T, P, G]
    thresholds = np.tile(np.minimum(IOU_THRESHOLDS, 1 - 1e-10), A)[:, None, None]
    scores = np.full((P, D, G), -1.0)
    entries = entry_start[rows][:, None] + g[None]
    scores[slot_of_row, step_of_row] = np.where(g[None] < per_detection[rows][:, None],
                                                iou[np.minimum(entries, len(iou) - 1)], -1.0)
    taken = np.zeros((A * T, P, G), bool)
    for step in range(D):
        active = np.flatnonzero(count > step)
        row_at = rows[first[active] + step]
        score = scores[active, step][None]  # [1, p, G]
        open_ = gt_valid[active][None] & ~(taken[:, active] & ~crowd[active][None])
        reach = open_ & (score >= thresholds)
        ignored_here = lanes_ignored[:, active]
        choice = np.full(reach.shape[:2], -1)
        for wanted in (False, True):  # a non-ignored ground truth first: pycocotools stops at the first ignored
            candidates = reach & (ignored_here == wanted) & (choice[..., None] < 0)
            best = np.where(candidates, score, -np.inf).max(axis=2, keepdims=True)
            at_best = candidates & (score == best)
            found = at_best.any(axis=2)
            choice = np.where(found, G - 1 - np.argmax(at_best[..., ::-1], axis=2), choice)  # ties: the later
        lane, p_index = np.nonzero(choice >= 0)
        chosen = choice[lane, p_index]
        pair_slot = active[p_index]
        det_row = row_at[p_index]
        area, threshold = np.divmod(lane, T)
        matched[area, threshold, det_row] = True
        match_ignored[area, threshold, det_row] = lanes_ignored[lane, pair_slot, chosen]
        match_nonzero[area, threshold, det_row] = nonzero[pair_slot, chosen]
        taken[lane, pair_slot, chosen] = True


# ---------------------------------------------------------------------------------------------------
# Accumulation and summary


def _accumulate(scores: np.ndarray, rank: np.ndarray, true_positive: np.ndarray, ignored: np.ndarray,
                num_positives: np.ndarray, precision: np.ndarray, recall: np.ndarray) -> None:
    """One category's precision [T, R, A, M] and recall [T, A, M] (pycocotools' accumulate) from its
    detection rows (image order, then score order) and their matching [A, T, N].

    Recall grows only at true positives, and precision falls at every other detection, so the
    precision envelope read at a recall point is the best precision at a true positive from there on:
    only the true positives' precision and recall are computed, from the count of detections not
    ignored up to each (the same numbers pycocotools computes at those places)."""
    areas = np.flatnonzero(num_positives > 0)
    if len(areas) == 0:
        return
    T = len(IOU_THRESHOLDS)
    positives = np.repeat(num_positives[areas], T)  # per lane (area, threshold)
    order = np.argsort(-scores, kind="mergesort")  # the stable order of every subset too
    ranks = rank[order]
    lanes_ignored = ignored[areas][:, :, order].reshape(len(areas) * T, -1)
    lanes_tp = true_positive[areas][:, :, order].reshape(len(areas) * T, -1)
    for m, max_det in enumerate(MAX_DETECTIONS):
        columns = ranks < max_det
        counted = ~lanes_ignored[:, columns]
        if counted.shape[1] == 0:
            recall[:, areas, m] = 0
            precision[:, :, areas, m] = 0
            continue
        counted_sum = np.cumsum(counted, axis=1)
        lane, position = np.nonzero(lanes_tp[:, columns] & counted)
        lane_start = np.searchsorted(lane, np.arange(len(positives) + 1))
        tp_sum = (np.arange(len(lane)) - lane_start[lane] + 1).astype(np.float64)
        rc = tp_sum / positives[lane]
        pr = tp_sum / (counted_sum[lane, position] + np.spacing(1))
        for index in range(len(positives)):
            a, t = areas[index // T], index % T
            found = slice(lane_start[index], lane_start[index + 1])
            hits = found.stop - found.start
            recall[t, a, m] = hits / positives[index]
            if hits == 0:
                precision[t, :, a, m] = 0
                continue
            envelope = np.maximum.accumulate(pr[found][::-1])[::-1]
            points = np.searchsorted(rc[found], RECALL_THRESHOLDS, side="left")
            precision[t, :, a, m] = np.where(points < hits, envelope[np.minimum(points, hits - 1)], 0.0)


def mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """The 12 numbers of pycocotools' summarize(), in its order."""
    t50, t75 = (int(np.argwhere(np.isclose(IOU_THRESHOLDS, t))[0, 0]) for t in (0.5, 0.75))
    last = len(MAX_DETECTIONS) - 1
    return np.array([
        mean_valid(precision[:, :, :, 0, last]),
        mean_valid(precision[t50, :, :, 0, last]),
        mean_valid(precision[t75, :, :, 0, last]),
        mean_valid(precision[:, :, :, 1, last]),
        mean_valid(precision[:, :, :, 2, last]),
        mean_valid(precision[:, :, :, 3, last]),
        mean_valid(recall[:, :, 0, 0]),
        mean_valid(recall[:, :, 0, 1]),
        mean_valid(recall[:, :, 0, last]),
        mean_valid(recall[:, :, 1, last]),
        mean_valid(recall[:, :, 2, last]),
        mean_valid(recall[:, :, 3, last]),
    ])
