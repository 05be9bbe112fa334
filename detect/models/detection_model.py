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
    set_class_weights  weights of the classification loss per class (train.class_weights)
    reference_boxes the boxes ground truth is matched to in training (RPN anchors, SSD default boxes)
                    and the IoU that makes a match, for `detect data stats` (detect/models/anchor_fit.py);
                    `reference_box_name` says what they are, `reference_box_keys` which config keys
                    shape them
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
    reference_box_name: ClassVar[str] = "reference boxes"
    reference_box_keys: ClassVar[str] = ""

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

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        """float [C + 1]: weights of the classification loss by true class (index 0 background), as
        train.class_weights resolves them; None: all 1. Not part of the state dict."""
        raise NotImplementedError

    def reference_boxes(self, height: int, width: int) -> tuple[torch.Tensor, float]:
        """(boxes float32 [A, 4] xyxy in input pixels, on the CPU; the IoU at which a ground-truth box
        counts as matched) for a padded input of `height` x `width`. The model may live on the meta
        device: only the shapes of its feature maps are needed."""
        raise NotImplementedError

    def _map_shapes(self, features_of, height: int, width: int) -> list[torch.Tensor]:
        """Empty CPU tensors [0, 0, Hl, Wl] with the shapes of the maps `features_of` gives for such an
        input (what anchor and default-box generators read)."""
        device = next(self.parameters()).device
        with torch.no_grad():
            maps = features_of(torch.empty(1, 3, height, width, device=device))
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        return [torch.empty(0, 0, *feature_map.shape[-2:]) for feature_map in maps]
