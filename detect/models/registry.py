"""The detector families (DetectionModel subclasses, detection_model.py), by `model.arch`
(detect/models/build.py imports each family's module).

    @DETECTORS.register("ssd")
    class SSD(DetectionModel): ...

    DETECTORS.get("ssd").from_config(model_cfg, input_cfg, num_classes, class_names)
"""

from __future__ import annotations

from detect.registry import Registry

DETECTORS = Registry("detector architecture", "model.arch")
