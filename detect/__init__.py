"""detect: an object detection pipeline (VOC / COCO data, Faster R-CNN and SSD, mAP, one CLI)."""

import os

# albumentations checks PyPI for a newer version at import; offline clusters must not stall on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

__all__ = ["Detector", "Detections", "evaluate", "train", "__version__"]


def __getattr__(name: str):
    """`from detect import Detector` (or train, evaluate: detect/api.py) imports torch only when asked
    (keeps `import detect` light)."""
    if name in ("Detector", "Detections"):
        from detect import infer

        return getattr(infer, name)
    if name in ("train", "evaluate"):
        from detect import api

        return getattr(api, name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
