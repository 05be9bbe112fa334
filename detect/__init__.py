"""detect: an object detection pipeline (VOC / COCO data, Faster R-CNN and SSD, mAP, one CLI)."""

import os

# albumentations checks PyPI for a newer version at import; offline clusters must not stall on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

__all__ = ["Detector", "Detections", "__version__"]


def __getattr__(name: str):
    """`from detect import Detector` imports torch only when asked (keeps `import detect` light)."""
    if name in ("Detector", "Detections"):
        from detect import infer

        return getattr(infer, name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
