"""The backbones, by `model.backbone`: each name says what it builds for each detector family.

    register_backbone("resnet50", two_stage=build_c4, ssd=build_ssd_trunk)   # in the family's module

    build_backbone(name, pretrained, trainable_layers) -> base.Backbone (Faster R-CNN)
    build_ssd_trunk(name, num_maps, input_size, pretrained, trainable_layers, reduced_tail) -> an SSD trunk
        (ssd_layers.py: a list of maps, `out_channels`, `feature_map_sizes(input_size)`)

A name without a builder for a family is a one-line ConfigError listing the names that have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from detect.errors import ConfigError
from detect.models.backbones.base import Backbone
from detect.registry import Registry


@dataclass(frozen=True)
class BackboneEntry:
    """What one backbone name builds; None: not for that detector family."""

    two_stage: Callable[[str, str, int | None], Backbone] | None = None
    """(name, pretrained, trainable_layers) -> Backbone."""
    ssd: Callable[..., nn.Module] | None = None
    """(name, num_maps, input_size, pretrained, trainable_layers, reduced_tail) -> SSD trunk."""


BACKBONES = Registry("backbone", "model.backbone")


def register_backbone(name: str, two_stage=None, ssd=None) -> None:
    BACKBONES.register(name)(BackboneEntry(two_stage, ssd))


def backbone_names(family: str) -> list[str]:
    """The names with a builder for `family` ("two_stage" or "ssd"), in registration order."""
    return [name for name, entry in BACKBONES.items() if getattr(entry, family) is not None]


def build_backbone(name: str, pretrained: str = "none", trainable_layers: int | None = None) -> Backbone:
    """The two-stage backbone `name`; `pretrained` as in weight_files.py, `trainable_layers` freezing.py."""
    entry = BACKBONES.get(name) if name in BACKBONES else None
    if entry is None or entry.two_stage is None:
        allowed = ", ".join(sorted(backbone_names("two_stage")))
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (allowed: {allowed})")
    return entry.two_stage(name, pretrained, trainable_layers)


def build_ssd_trunk(
    name: str, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None,
    reduced_tail: bool | None = None,
) -> nn.Module:
    """The SSD trunk `name` giving `num_maps` feature maps for a square input of `input_size` pixels.

    reduced_tail (MobileNetV3 only): None reduces it exactly when there are no pretrained weights."""
    entry = BACKBONES.get(name) if name in BACKBONES else None
    if entry is None or entry.ssd is None:
        allowed = ", ".join(sorted(backbone_names("ssd")))
        raise ConfigError(f"model.backbone: '{name}' has no SSD trunk (allowed for SSD: {allowed})")
    return entry.ssd(name, num_maps, input_size, pretrained, trainable_layers, reduced_tail)
