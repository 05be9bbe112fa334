"""`detect infer --track`: a video's detections with track ids, drawn with their ids and trails, and the
video's tracks.csv. One VideoTracking per video (ids restart at 1 in each).

    track_cfg = track_config(["high_score=0.6"])   --track-set key=value -> the track config section
    threshold = model_threshold(score_threshold, track_cfg)   what the detector runs at
    tracking = VideoTracking(track_cfg, score_threshold)
    found = tracking.track(found)          frame by frame, in order: Detections with track_ids
    frame = tracking.draw(frame, found)    boxes labelled "#id class score", each track's recent path
    tracking.write_csv(path)               track_id, class_name, first_frame, last_frame, frames_seen
    tracking.seconds                       the time spent tracking (association and appearance)

The detector runs at track.low_score (ByteTrack's unsure detections keep tracks alive); what is
reported is every detection in a confirmed track, and the others that reach the user's
--score-threshold (with no track id).
"""

from __future__ import annotations

import csv
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from detect.draw import class_colour, draw_boxes
from detect.infer.detector import Detections
from detect.outputs import atomic_output
from detect.track import TRACKERS
from detect.track.appearance import BINS, colour_histograms


def track_config(settings: list[str] | None):
    """The track config section with `settings` (key=value, the key with or without `track.`)."""
    from detect.config import Config, saved_config_with_overrides

    overrides = [f"track.{item.removeprefix('track.')}" for item in settings or []]
    return saved_config_with_overrides(Config(), overrides).track


def model_threshold(score_threshold: float, track_cfg) -> float:
    """The score the detector runs at when tracking: the unsure detections too (ByteTrack's low score)."""
    return min(score_threshold, track_cfg.low_score)


class VideoTracking:
    def __init__(self, track_cfg, score_threshold: float, class_names: list[str]) -> None:
        self.tracker = TRACKERS.get(track_cfg.tracker)(track_cfg)
        self.score_threshold = score_threshold
        self.class_names = list(class_names)
        self.trail_length = track_cfg.trail
        self.trails: dict[int, deque] = {}
        self.seconds = 0.0  # spent in track(): what tracking adds to the time per frame

    def track(self, found: Detections, frame_rgb: np.ndarray | None = None) -> Detections:
        started = time.perf_counter()
        try:
            return self._track(found, frame_rgb)
        finally:
            self.seconds += time.perf_counter() - started

    def _track(self, found: Detections, frame_rgb: np.ndarray | None) -> Detections:
        features = None
        if frame_rgb is not None and self.tracker.cfg.appearance_weight > 0:
            # Only confident detections are matched by appearance: histograms of the others are not needed.
            confident = found.scores >= self.tracker.cfg.high_score
            features = np.zeros((len(found), BINS ** 3), np.float32)
            features[confident] = colour_histograms(frame_rgb, found.boxes[confident])
        tracked = self.tracker.update(found.boxes, found.scores, found.labels, features)
        track_ids = np.zeros(len(found), np.int64)
        track_ids[tracked.detection_index] = tracked.track_ids
        keep = (track_ids > 0) | (found.scores >= self.score_threshold)
        for track_id, box in zip(tracked.track_ids.tolist(), tracked.boxes):
            self.trails.setdefault(track_id, deque(maxlen=max(self.trail_length, 1))).append(
                (int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)))
        names = [name for name, k in zip(found.class_names, keep) if k]
        return replace(found, boxes=found.boxes[keep], scores=found.scores[keep], labels=found.labels[keep],
                       class_names=names, track_ids=track_ids[keep])

    def draw(self, frame_rgb: np.ndarray, found: Detections) -> np.ndarray:
        texts = [f"#{track_id} {name} {score:.2f}" if track_id else f"{name} {score:.2f}"
                 for track_id, name, score in zip(found.track_ids, found.class_names, found.scores)]
        image = draw_boxes(frame_rgb, found.boxes, found.labels, self.class_names, texts=texts)
        if self.trail_length:
            for track_id, label in zip(found.track_ids.tolist(), found.labels.tolist()):
                points = self.trails.get(track_id)
                if track_id and points and len(points) > 1:
                    cv2.polylines(image, [np.array(points, np.int32)], False, class_colour(int(label)), 2, cv2.LINE_AA)
        return image

    def write_csv(self, path: Path) -> Path:
        with atomic_output(path) as partial:
            with open(partial, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["track_id", "class_name", "first_frame", "last_frame", "frames_seen"])
                for track in self.tracker.all_tracks():
                    writer.writerow([track.track_id, self.class_names[track.label - 1], track.first_frame,
                                     track.last_frame, track.frames_seen])
        return path
