"""Running a trained detector: the public `Detector` API (detector.py), `detect infer`'s sources
(sources.py) and outputs (run.py, video_output.py), and `--classes` (class_filter.py).

    from detect.infer import Detector, run_inference
"""

from detect.infer.detector import Detections, Detector, load_detector
from detect.infer.run import InferenceSummary, draw_detections, run_inference

__all__ = ["Detections", "Detector", "InferenceSummary", "draw_detections", "load_detector", "run_inference"]
