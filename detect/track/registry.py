"""The trackers `detect infer --track` can run, by `track.tracker` (the registry pattern of
detect/registry.py). A tracker is a class built from the track config section:

    @TRACKERS.register("bytetrack")
    class ByteTracker:
        def __init__(self, cfg): ...
        def update(self, boxes, scores, labels, features) -> tracked (track_ids, boxes, detection_index)
        def all_tracks(self) -> every track seen, for <video>.tracks.csv
"""

from __future__ import annotations

from detect.registry import Registry

TRACKERS = Registry("tracker", "track.tracker")
