"""Tracking scored against a MOTChallenge ground truth (`detect infer VIDEO --track --gt FILE`): the
standard CLEAR-MOT and identity metrics (Bernardin and Stiefelhagen, 2008; Ristani et al., 2016), as the
motmetrics library computes them, and HOTA (Luiten et al., IJCV 2021) as the trackeval package does.

    scores = score_video(gt_txt, tracked_jsonl) -> {mota, idf1, hota, deta, assa, num_switches, recall,
                                                    precision, ..., detector_recall, num_frames, num_objects}
    print(format_scores(scores, summary))          the lines `detect infer --gt` prints

HOTA is None where trackeval is not installed (`pip install --no-deps trackeval`: its other requirements
are ours, and its opencv-python would replace our headless OpenCV, which HOTA does not use).

The ground truth: `frame,id,left,top,width,height,conf,class,visibility` lines (1-based frames), as
`detect data synth --video` writes them. The tracker's output: the JSONL of `detect infer --track`
(frame 0-based; detections with a track_id are the hypotheses). A hypothesis matches an object at IoU
>= 0.5, whatever the class. `detector_recall` is the share of ground-truth boxes that some detection
written for the frame covers at IoU >= 0.5: the bound the detector puts on the tracker. The JSONL holds
the detections above the score threshold and the tracked ones below it, so a tracker that keeps more
tracks on unsure detections moves this share a little too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from detect.errors import DetectError
from detect.iou import iou_matrix

METRICS = ("mota", "motp", "idf1", "num_switches", "recall", "precision", "mostly_tracked", "mostly_lost",
           "num_unique_objects", "num_fragmentations")


def read_gt(path: Path) -> dict[int, list[tuple[int, np.ndarray]]]:
    """0-based frame -> [(object id, xyxy box)]."""
    frames: dict[int, list] = defaultdict(list)
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            frame, object_id, left, top, width, height = (float(v) for v in line.split(",")[:6])
        except ValueError:
            raise DetectError(f"{path}: line {number}: expected frame,id,left,top,width,height,...") from None
        frames[int(frame) - 1].append((int(object_id), np.array([left, top, left + width, top + height])))
    return frames


def read_tracked(path: Path) -> dict[int, list[dict]]:
    """0-based frame -> its detections, from a JSONL of `detect infer --track`."""
    frames = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            frames[int(record["frame"])] = list(record["detections"])
        except (ValueError, KeyError, TypeError):
            raise DetectError(f"{path}: line {number}: expected a JSON record with frame and detections") from None
    return frames


def score_video(gt_path: Path, tracked_path: Path) -> dict:
    try:
        import motmetrics
    except ImportError:
        raise DetectError("scoring tracks needs motmetrics: pip install motmetrics") from None
    gt, tracked = read_gt(gt_path), read_tracked(tracked_path)
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    covered = total = 0
    for frame in range(max([*gt, *tracked], default=-1) + 1):
        objects = gt.get(frame, [])
        detections = tracked.get(frame, [])
        hypotheses = [d for d in detections if d.get("track_id") is not None]
        gt_boxes = np.array([box for _, box in objects]).reshape(-1, 4)
        hyp_boxes = np.array([d["box"] for d in hypotheses], float).reshape(-1, 4)
        iou = iou_matrix(gt_boxes, hyp_boxes)
        accumulator.update([i for i, _ in objects], [d["track_id"] for d in hypotheses],
                           np.where(iou >= 0.5, 1.0 - iou, np.nan), frameid=frame)
        all_boxes = np.array([d["box"] for d in detections], float).reshape(-1, 4)
        covered += matched_count(iou_matrix(gt_boxes, all_boxes))
        total += len(objects)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(METRICS), name="video")
    scores = {name: float(summary[name].iloc[0]) for name in METRICS}
    return {**scores, **hota_scores(gt, tracked), "detector_recall": covered / total if total else 0.0,
            "num_frames": len(tracked), "num_objects": total}


def hota_scores(gt: dict[int, list], tracked: dict[int, list[dict]]) -> dict:
    """{hota, deta, assa}: trackeval's HOTA, DetA and AssA (means over its 19 localisation thresholds,
    IoU 0.05 to 0.95), every tracked box a hypothesis whatever its class; all None without trackeval."""
    try:
        from trackeval.metrics import HOTA
    except ImportError:
        return dict.fromkeys(("hota", "deta", "assa"))
    frames = range(max([*gt, *tracked], default=-1) + 1)
    gt_ids = [[object_id for object_id, _ in gt.get(frame, [])] for frame in frames]
    hyp_ids = [[d["track_id"] for d in tracked.get(frame, []) if d.get("track_id") is not None] for frame in frames]
    gt_index = {object_id: index for index, object_id in enumerate(sorted({i for ids in gt_ids for i in ids}))}
    hyp_index = {track_id: index for index, track_id in enumerate(sorted({i for ids in hyp_ids for i in ids}))}
    similarity = []
    for frame in frames:
        gt_boxes = np.array([box for _, box in gt.get(frame, [])], float).reshape(-1, 4)
        hyp_boxes = np.array([d["box"] for d in tracked.get(frame, []) if d.get("track_id") is not None],
                             float).reshape(-1, 4)
        similarity.append(iou_matrix(gt_boxes, hyp_boxes))
    data = {  # trackeval's sequence data: ids numbered 0.. in order, one IoU matrix per frame
        "num_timesteps": len(frames), "num_gt_ids": len(gt_index), "num_tracker_ids": len(hyp_index),
        "num_gt_dets": sum(map(len, gt_ids)), "num_tracker_dets": sum(map(len, hyp_ids)),
        "gt_ids": [np.array([gt_index[i] for i in ids], int) for ids in gt_ids],
        "tracker_ids": [np.array([hyp_index[i] for i in ids], int) for ids in hyp_ids],
        "similarity_scores": similarity,
    }
    result = HOTA().eval_sequence(data)
    return {name: float(np.mean(result[key])) for name, key in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"))}


def format_scores(scores: dict, summary=None) -> str:
    """The lines of `detect infer --track --gt`: the scores, and what tracking adds to the time per frame
    (`summary`: the run's InferenceSummary, its tracker_seconds within seconds)."""
    hota = "HOTA needs trackeval (pip install --no-deps trackeval)" if scores["hota"] is None else (
        f"HOTA {100 * scores['hota']:.1f} % (DetA {100 * scores['deta']:.1f}, AssA {100 * scores['assa']:.1f})")
    lines = [f"tracking: MOTA {100 * scores['mota']:.1f} %, IDF1 {100 * scores['idf1']:.1f} %, {hota}; "
             f"{int(scores['num_switches'])} ID switches over {int(scores['num_unique_objects'])} objects in "
             f"{scores['num_frames']} frames; the detector found {100 * scores['detector_recall']:.1f} % of the boxes"]
    if summary is not None and summary.frames:
        others = max(summary.seconds - summary.tracker_seconds, 1e-9)
        tracking_ms = 1000 * summary.tracker_seconds / summary.frames
        lines.append(f"time per frame: {1000 * summary.seconds / summary.frames:.1f} ms, of which tracking "
                     f"{tracking_ms:.2f} ms (+{100 * summary.tracker_seconds / others:.1f} % over detecting alone)")
    return "\n".join(lines)


def matched_count(iou: np.ndarray, threshold: float = 0.5) -> int:
    """Ground-truth boxes matched one-to-one at IoU >= threshold (optimal assignment)."""
    if iou.size == 0:
        return 0
    rows, cols = linear_sum_assignment(-iou)
    return int((iou[rows, cols] >= threshold).sum())
