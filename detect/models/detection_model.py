"""What every detector family is: the model contract (detect/models/__init__.py) and what it declares to
the code around it, so that weight loading, fusing and export ask the model, never its type.

    @DETECTORS.register("my_arch")          # detect/models/registry.py: model.arch -> the family
    class MyDetector(DetectionModel):
        class_rows = (ClassRows(r"head\\.cls\\."),)
        @classmethod
        def from_config(cls, model_cfg, input_cfg, num_classes, class_names=None): ...
        def forward(self, images, image_sizes, targets=None): ...
        def postprocess(self, outputs, image_sizes, scales): ...

Declared by each family:
    class_rows      where each class's rows lie in the state dict (class_rows.ClassRows): the layers
                    whose rows weights.py carries over by class name
    exportable      whether `detect export` traces forward + postprocess as one graph (the padded,
                    fixed-shape postprocess makes that possible)
    nhwc_inference  a switch fold_batchnorm's inference copy turns on: on a CPU, convolutions on NHWC
                    maps (faster there, equal up to float rounding)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from detect.models.class_rows import ClassRows


class DetectionModel(nn.Module):
    """The base of every detector family; see the module docstring."""

    class_rows: ClassVar[tuple[ClassRows, ...]] = ()
    exportable: ClassVar[bool] = True

    def __init__(self):
        super().__init__()
        self.nhwc_inference = False

    @classmethod
    def from_config(cls, model_cfg, input_cfg, num_classes: int,
                    class_names: list[str] | None = None) -> "DetectionModel":
        """The detector for `num_classes` foreground classes from the `model` and `input` config sections;
        `class_names` (when known) decide which rows of detector weights are carried over."""
        raise NotImplementedError

    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        """Raw outputs -> padded detections (detect/models/__init__.py)."""
        raise NotImplementedError
