"""Identities across video frames: ByteTrack-style association of each frame's detections with tracks.

The rules are ByteTrack's (Zhang et al., 2022, "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box"), with its default settings (`track.*` in the config):
1. Every track's box is predicted into the frame (constant-velocity Kalman filter, kalman.py); a track
   unseen in the last frame keeps its size.
2. Confirmed and lost tracks are matched to the confident detections (score >= high_score) by IoU,
   optimally (the Hungarian method, scipy's linear_sum_assignment), pairs below match_iou left apart.
3. Confirmed tracks still unmatched are matched to the unsure detections (low_score <= score <
   high_score) at low_match_iou: a partly hidden object keeps its track on a weak detection.
4. Tentative tracks (seen once) are matched to the confident detections left, at tentative_match_iou;
   those left unmatched are dropped.
5. A confident detection still unmatched with score >= new_track_score starts a tentative track;
   tentative tracks become confirmed at their second match (in a video's first frame, at once). A
   confirmed track unmatched for more than lost_buffer frames ends. Track ids are given at
   confirmation, count up from 1 within a video, and are never reused.
Before these, a detection covered (IoU >= duplicate_iou) by a more confident one of any class is left out:
the detector's NMS runs per class, and one object must not feed two tracks. Matching is across classes,
as ByteTrack's (a track takes the class its detections mostly name); `per_class` restricts it.

    tracker = ByteTracker(track_cfg)
    tracked = tracker.update(boxes [N, 4] xyxy, scores [N], labels [N])   once per frame, in order
        -> TrackedDetections: track_ids int [M], boxes, scores, labels, detection_index int [M] (which
           input detection each track took this frame); only confirmed tracks matched in this frame
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from detect.iou import iou_matrix
from detect.track import appearance, kalman
from detect.track.registry import TRACKERS


@dataclass
class Track:
    track_id: int
    label: int
    mean: np.ndarray
    covariance: np.ndarray
    score: float
    confirmed: bool = False
    frames_seen: int = 1
    last_frame: int = 0
    first_frame: int = 0
    label_votes: Counter = field(default_factory=Counter)  # the classes of its detections (class-agnostic matching)
    feature: np.ndarray | None = None  # colour histogram (appearance.py): a running mean over its matches that
    # no other box overlapped (track.appearance_overlap_iou)

    @property
    def box(self) -> np.ndarray:
        return kalman.measurement_to_xyxy(self.mean)


@dataclass
class TrackedDetections:
    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    detection_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.track_ids)


def distinct(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """bool [N]: detections not covered at IoU >= max_iou by a higher-scoring one of any class. A
    detector's NMS runs per class, so one object may come back as two classes; only one may take a
    track."""
    keep = np.ones(len(scores), bool)
    if len(scores) < 2 or max_iou >= 1.0:
        return keep
    order = np.argsort(-scores, kind="stable")
    iou = iou_matrix(boxes[order], boxes[order])
    for rank in range(1, len(order)):
        if np.any(iou[rank, :rank][keep[order[:rank]]] >= max_iou):
            keep[order[rank]] = False
    return keep


def match(tracks: list[Track], boxes: np.ndarray, labels: np.ndarray, min_iou: float, per_class: bool = False,
          features: np.ndarray | None = None, cfg=None):
    """Optimal one-to-one pairs (track index, detection index) of IoU >= min_iou (and the same class when
    `per_class`). With `features` (the detections' colour histograms), pairs that look too different
    (appearance distance > cfg.max_appearance_distance) are left apart, and the assignment weighs IoU
    minus cfg.appearance_weight x the distance."""
    if not tracks or len(boxes) == 0:
        return [], list(range(len(tracks))), list(range(len(boxes)))
    iou = iou_matrix(np.stack([track.box for track in tracks]), boxes)
    if per_class:
        iou[np.array([track.label for track in tracks])[:, None] != labels[None, :]] = 0.0
    score = iou.copy()
    if features is not None and all(track.feature is not None for track in tracks):
        looks = appearance.distance(np.stack([track.feature for track in tracks]), features)
        iou[looks > cfg.max_appearance_distance] = 0.0
        score = iou - cfg.appearance_weight * looks
    rows, cols = linear_sum_assignment(-score)
    pairs = [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    matched_tracks, matched_dets = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [i for i in range(len(tracks)) if i not in matched_tracks],
            [j for j in range(len(boxes)) if j not in matched_dets])


@TRACKERS.register("bytetrack")
class ByteTracker:
    def __init__(self, track_cfg) -> None:
        self.cfg = track_cfg
        self.tracks: list[Track] = []  # confirmed (matched or lost) and tentative
        self.ended: list[Track] = []
        self.frame = -1
        self.next_id = 1
        self.features: np.ndarray | None = None

    def update(self, boxes, scores, labels, features=None) -> TrackedDetections:
        """`features`: float [N, F] colour histograms of the detections (appearance.py), or None to match by
        boxes alone."""
        cfg = self.cfg
        self.features = None if features is None or cfg.appearance_weight == 0 else np.asarray(features)
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores, labels = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels, np.int64).reshape(-1)
        for track in self.tracks:
            if track.last_frame < self.frame - 1:
                # Unseen: keep its last size. An object shrinking as it goes behind another would else be
                # predicted ever smaller while hidden, and its box would no longer meet it when it shows
                # again (ByteTrack stops the height's velocity of a lost track the same way).
                track.mean[6:8] = 0.0
            track.mean, track.covariance = kalman.predict(track.mean, track.covariance)
        usable = distinct(boxes, scores, cfg.duplicate_iou)
        self._crowded = self._overlapping(boxes, usable & (scores >= cfg.high_score))
        high = np.flatnonzero(usable & (scores >= cfg.high_score))
        low = np.flatnonzero(usable & (scores >= cfg.low_score) & (scores < cfg.high_score))
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        taken: dict[int, Track] = {}  # detection index -> its track

        pairs, unmatched, high_left = match(confirmed, boxes[high], labels[high], cfg.match_iou, cfg.per_class,
                                            self._features(high), cfg)
        self._apply(pairs, confirmed, high, boxes, scores, labels, taken)
        recent = [confirmed[i] for i in unmatched if confirmed[i].last_frame == self.frame - 1]
        pairs, _, _ = match(recent, boxes[low], labels[low], cfg.low_match_iou, cfg.per_class)
        self._apply(pairs, recent, low, boxes, scores, labels, taken)
        high_left = high[high_left]
        pairs, tentative_left, high_rest = match(tentative, boxes[high_left], labels[high_left],
                                                 cfg.tentative_match_iou, cfg.per_class)
        self._apply(pairs, tentative, high_left, boxes, scores, labels, taken, confirm=True)
        dropped = {id(tentative[i]) for i in tentative_left}
        for index in high_left[high_rest]:
            if scores[index] >= cfg.new_track_score:
                track = self._start(boxes[index], scores[index], labels[index])
                track.feature = None if self.features is None else self.features[index]
                self.tracks.append(track)
                if track.confirmed:  # the first frame's tracks are confirmed at once
                    taken[int(index)] = track
        kept = []
        for track in self.tracks:
            if id(track) in dropped:
                continue
            if track.confirmed and self.frame - track.last_frame > cfg.lost_buffer:
                self.ended.append(track)
                continue
            kept.append(track)
        self.tracks = kept
        order = sorted(taken)
        return TrackedDetections(
            np.array([taken[i].track_id for i in order], np.int64), boxes[order].reshape(-1, 4).astype(np.float32),
            scores[order].astype(np.float32), labels[order], np.array(order, np.int64))

    def _apply(self, pairs, tracks, det_indices, boxes, scores, labels, taken, confirm=False) -> None:
        for track_index, local in pairs:
            track, index = tracks[track_index], int(det_indices[local])
            track.mean, track.covariance = kalman.update(track.mean, track.covariance,
                                                         kalman.xyxy_to_measurement(boxes[index]))
            track.score, track.last_frame = float(scores[index]), self.frame
            track.frames_seen += 1
            track.label_votes[int(labels[index])] += scores[index]
            if self.features is not None and not self._crowded(index, track):
                seen = self.features[index]
                track.feature = seen if track.feature is None else 0.9 * track.feature + 0.1 * seen
            track.label = track.label_votes.most_common(1)[0][0]  # the class the detections mostly say
            if confirm:
                self._confirm(track)
            if track.confirmed:
                taken[index] = track

    def _overlapping(self, boxes: np.ndarray, confident: np.ndarray):
        """-> crowded(detection index, its track) -> bool: whether the detection overlaps another confident
        detection of this frame or another confirmed track's predicted box at IoU > appearance_overlap_iou."""
        limit = self.cfg.appearance_overlap_iou
        if self.features is None or limit >= 1.0:
            return lambda index, track: False
        confirmed = [t for t in self.tracks if t.confirmed]
        with_detections = iou_matrix(boxes, boxes[confident])
        with_detections[np.flatnonzero(confident), np.arange(int(confident.sum()))] = 0.0  # not with itself
        with_tracks = iou_matrix(boxes, np.stack([t.box for t in confirmed]) if confirmed else np.zeros((0, 4)))
        column = {id(t): j for j, t in enumerate(confirmed)}

        def crowded(index: int, track: Track) -> bool:
            near_tracks = with_tracks[index].copy()
            if id(track) in column:
                near_tracks[column[id(track)]] = 0.0
            return bool(np.any(with_detections[index] > limit) or np.any(near_tracks > limit))

        return crowded

    def _features(self, indices: np.ndarray) -> np.ndarray | None:
        return None if self.features is None else self.features[indices]

    def _start(self, box, score, label) -> Track:
        mean, covariance = kalman.initiate(kalman.xyxy_to_measurement(box))
        track = Track(0, int(label), mean, covariance, float(score), last_frame=self.frame, first_frame=self.frame,
                      label_votes=Counter({int(label): float(score)}))
        if self.frame == 0:
            self._confirm(track)
        return track

    def _confirm(self, track: Track) -> None:
        """A track gets its id when confirmed: ids count up without gaps left by tentative tracks."""
        track.confirmed, track.track_id = True, self.next_id
        self.next_id += 1

    def all_tracks(self) -> list[Track]:
        """Every confirmed track of the video so far, ended or not, by id (for tracks.csv)."""
        return sorted((t for t in [*self.ended, *self.tracks] if t.confirmed), key=lambda t: t.track_id)
