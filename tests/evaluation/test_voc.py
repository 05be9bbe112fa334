"""VOC AP: hand-computed cases and an independent slow reference (a plain loop, as in the devkit)."""

from __future__ import annotations

import numpy as np
import pytest

from detect.evaluation.evaluator import DetectionEvaluator
from detect.evaluation.voc import average_precision

NAMES = ["cat", "dog", "bird"]


def gt(boxes, labels, difficult=None, image_id=0):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return {"boxes": boxes, "labels": np.asarray(labels, np.int64), "image_id": image_id,
            "difficult": np.zeros(n, bool) if difficult is None else np.asarray(difficult, bool),
            "iscrowd": np.zeros(n, bool), "orig_size": (100, 100)}


def pred(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def evaluate(preds, gts, metrics=("voc07", "voc12")):
    evaluator = DetectionEvaluator(NAMES, metrics=metrics)
    evaluator.process(preds, gts)
    return evaluator.evaluate()


A, B, FAR = [0, 0, 10, 10], [20, 20, 40, 40], [60, 60, 70, 70]


def test_duplicate_detection_is_false_positive_and_hand_computed_ap():
    # TP (A), duplicate of A (FP), TP (B): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    results = evaluate([pred([A, A, B], [0.9, 0.8, 0.7], [1, 1, 1])], [gt([A, B], [1, 1])])
    assert results["voc12"]["ap"]["cat"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 11-point: recall points 0..0.5 reach precision 1, 0.6..1 reach 2/3.
    assert results["voc07"]["ap"]["cat"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_eleven_point_differs_from_all_point_on_known_curve():
    precision = np.array([1.0, 0.5, 1 / 3, 0.5])
    recall = np.array([0.25, 0.25, 0.25, 0.5])
    assert average_precision(precision, recall) == pytest.approx(0.25 * 1 + 0.25 * 0.5)
    # Recall points 0, 0.1, 0.2 -> 1; 0.3, 0.4, 0.5 -> 0.5; 0.6 .. 1 -> 0.
    assert average_precision(precision, recall, eleven_point=True) == pytest.approx((3 + 1.5) / 11)


def test_ties_in_score_keep_input_order():
    false_first = evaluate([pred([FAR, A], [0.5, 0.5], [1, 1])], [gt([A], [1])])
    true_first = evaluate([pred([A, FAR], [0.5, 0.5], [1, 1])], [gt([A], [1])])
    assert false_first["voc12"]["ap"]["cat"] == pytest.approx(0.5)
    assert true_first["voc12"]["ap"]["cat"] == pytest.approx(1.0)
    # Across images the tie keeps image order too.
    across = evaluate([pred([FAR], [0.5], [1]), pred([A], [0.5], [1])], [gt([], []), gt([A], [1], image_id=1)])
    assert across["voc12"]["ap"]["cat"] == pytest.approx(0.5)


def test_difficult_objects_are_neither_true_nor_false_positives():
    results = evaluate([pred([B, A, B], [0.9, 0.8, 0.7], [1, 1, 1])], [gt([A, B], [1, 1], difficult=[False, True])])
    assert results["voc12"]["ap"]["cat"] == pytest.approx(1.0)
    assert results["voc12"]["num_gt"]["cat"] == 1
    # A class whose only objects are difficult has no AP.
    only_difficult = evaluate([pred([A], [0.9], [2])], [gt([A], [2], difficult=[True])])
    assert only_difficult["voc12"]["ap"]["dog"] is None


def test_no_detections_and_class_without_ground_truth():
    results = evaluate([pred([], [], [])], [gt([A, B], [1, 2])])
    assert results["voc12"]["ap"] == {"cat": 0.0, "dog": 0.0, "bird": None}
    assert results["voc07"]["map"] == 0.0
    # Detections of a class without ground truth do not change the mean.
    with_bird = evaluate([pred([A, B, FAR], [0.9, 0.9, 0.9], [1, 2, 3])], [gt([A, B], [1, 2])])
    assert with_bird["voc12"]["ap"]["bird"] is None
    assert with_bird["voc12"]["map"] == pytest.approx(1.0)
    nothing = evaluate([pred([], [], [])], [gt([], [])])
    assert nothing["voc12"]["map"] is None


def test_match_takes_highest_iou_box_even_when_taken():
    # Devkit rule: the second detection's best box is A (already taken) -> false positive,
    # although it also overlaps the free box A2 above the threshold.
    a2 = [0, 0, 10, 12]
    results = evaluate([pred([A, [0, 0, 10, 10.5]], [0.9, 0.8], [1, 1])], [gt([A, a2], [1, 1])])
    assert results["voc12"]["ap"]["cat"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------------
# Independent slow reference: one detection at a time, as VOCevaldet.m does.


def reference_ap(preds, gts, label, iou_thresh=0.5, eleven_point=False):
    records = []  # (score, image, box)
    for image, p in enumerate(preds):
        for box, score, lab in zip(p["boxes"], p["scores"], p["labels"]):
            if lab == label:
                records.append((float(score), image, [float(v) for v in box]))
    order = sorted(range(len(records)), key=lambda i: -records[i][0])  # Python's sort is stable
    taken = {}
    npos = 0
    for image, g in enumerate(gts):
        for lab, diff in zip(g["labels"], g["difficult"]):
            npos += int(lab == label and not diff)
    if npos == 0:
        return None
    tp, fp = [], []
    for i in order:
        _, image, box = records[i]
        best, best_j = -1.0, -1
        for j, (gbox, lab) in enumerate(zip(gts[image]["boxes"], gts[image]["labels"])):
            if lab != label:
                continue
            iw = min(box[2], gbox[2]) - max(box[0], gbox[0])
            ih = min(box[3], gbox[3]) - max(box[1], gbox[1])
            if iw > 0 and ih > 0:
                inter = iw * ih
                union = (box[2] - box[0]) * (box[3] - box[1]) + (gbox[2] - gbox[0]) * (gbox[3] - gbox[1]) - inter
                if inter / union > best:
                    best, best_j = inter / union, j
        if best >= iou_thresh:
            if gts[image]["difficult"][best_j]:
                continue
            if (image, best_j) in taken:
                tp.append(0), fp.append(1)
            else:
                taken[(image, best_j)] = True
                tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    rec, prec, ctp, cfp = [], [], 0, 0
    for t, f in zip(tp, fp):
        ctp += t
        cfp += f
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp))
    if eleven_point:
        total = 0.0
        for k in range(11):
            above = [p for p, r in zip(prec, rec) if r >= k / 10]
            total += max(above) if above else 0.0
        return total / 11
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def random_case(seed, num_images=30, num_classes=3):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for image in range(num_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], 1)
        labels = rng.integers(1, num_classes + 1, n)
        gts.append(gt(boxes, labels, difficult=rng.random(n) < 0.2, image_id=image))
        m = int(rng.integers(0, 12))
        near = rng.integers(0, max(n, 1), m)
        dboxes = (boxes[near] if n else rng.uniform(0, 80, (m, 4))) + rng.normal(0, 3, (m, 4))
        dboxes[:, 2:] = np.maximum(dboxes[:, 2:], dboxes[:, :2] + 1)
        dlabels = labels[near] if n else rng.integers(1, num_classes + 1, m)
        dlabels = np.where(rng.random(m) < 0.3, rng.integers(1, num_classes + 1, m), dlabels)
        scores = np.round(rng.random(m), 1)  # coarse scores: many ties
        preds.append(pred(dboxes, scores, dlabels))
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference_on_random_detections(seed):
    preds, gts = random_case(seed)
    results = evaluate(preds, gts)
    for metric, eleven in (("voc12", False), ("voc07", True)):
        expected = [reference_ap(preds, gts, label, eleven_point=eleven) for label in (1, 2, 3)]
        got = [results[metric]["ap"][name] for name in NAMES]
        for e, g in zip(expected, got):
            assert (e is None) == (g is None)
            if e is not None:
                assert g == pytest.approx(e, abs=1e-6)
        present = [e for e in expected if e is not None]
        assert results[metric]["map"] == pytest.approx(np.mean(present), abs=1e-6)
