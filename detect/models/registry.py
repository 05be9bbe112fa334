"""The detector families, by `model.arch` (detect/models/build.py imports each family's module).

    @DETECTORS.register("ssd")
    def build_ssd(model_cfg, input_cfg, num_classes, class_names=None) -> nn.Module: ...
"""

from __future__ import annotations

from detect.registry import Registry

DETECTORS = Registry("detector architecture", "model.arch")
