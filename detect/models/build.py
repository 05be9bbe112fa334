"""Config -> detector. One place that reads the model config; the models take explicit arguments."""

from __future__ import annotations

from torch import nn

from detect.config import InputConfig, ModelConfig


def build_model(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
                class_names: list[str] | None = None) -> nn.Module:
    """A detector for `num_classes` foreground classes (labels 1..num_classes; 0 is background).

    `class_names`: their names, when known (pretrained detector weights keep the rows of these classes)."""
    if model_cfg.arch == "faster_rcnn":
        from detect.models.faster_rcnn import build_faster_rcnn

        return build_faster_rcnn(model_cfg, input_cfg, num_classes, class_names)
    if model_cfg.arch in ("ssd", "ssdlite"):
        from detect.models.ssd import build_ssd

        return build_ssd(model_cfg, input_cfg, num_classes, class_names)
    raise ValueError(f"unknown model.arch {model_cfg.arch!r}")
