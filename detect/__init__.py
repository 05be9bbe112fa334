"""detect: an object detection pipeline (VOC / COCO data, Faster R-CNN and SSD, mAP, one CLI)."""

import os

# albumentations checks PyPI for a newer version at import; offline clusters must not stall on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
