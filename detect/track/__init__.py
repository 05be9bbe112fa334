"""Object identities across the frames of a video (ByteTrack-style association, bytetrack.py), each tracker
registered in TRACKERS (registry.py) by `track.tracker`."""

from detect.track import bytetrack  # noqa: F401 - it registers itself
from detect.track.registry import TRACKERS

__all__ = ["TRACKERS"]
