"""Config -> detector. One place that reads the model config; the models take explicit arguments.

Each detector family (a DetectionModel, detection_model.py) registers itself in DETECTORS under its
`model.arch` name (faster_rcnn.py: `faster_rcnn`; ssd.py: `ssd`; ssdlite.py: `ssdlite`); the imports
below make every family present as soon as this module is. A new family is one module with its
registration, its name here and in the config's `model.arch` (a test keeps the two lists equal).
"""

from __future__ import annotations

from torch import nn

from detect.config import InputConfig, ModelConfig
from detect.models import faster_rcnn, ssd, ssdlite  # noqa: F401 - they register themselves
from detect.models.registry import DETECTORS


def build_model(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
                class_names: list[str] | None = None) -> nn.Module:
    """A detector for `num_classes` foreground classes (labels 1..num_classes; 0 is background).

    `class_names`: their names, when known (pretrained detector weights keep the rows of these classes)."""
    return DETECTORS.get(model_cfg.arch).from_config(model_cfg, input_cfg, num_classes, class_names)
