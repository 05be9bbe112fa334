"""Backbones for both detector families, by `model.backbone` (registry.py), one module per network:

    vgg.py  resnet.py  mobilenet_v3.py  tiny_resnet.py    each registers what it builds for Faster
                                                         R-CNN (a base.Backbone) and for SSD (a trunk)
    base.py          the two-stage Backbone (trunk + per-RoI head) and feature pyramids
    ssd_layers.py    SSD's extra feature layers and the SSD trunk contract
    weight_files.py  ImageNet weights, the torch hub cache, state dicts from a path
    freezing.py      `trainable_layers`: one rule for every backbone

A new backbone is one module here that calls `register_backbone`, plus its line below.
"""

from detect.models.backbones import mobilenet_v3, resnet, tiny_resnet, vgg  # noqa: F401 - they register
from detect.models.backbones.base import Backbone
from detect.models.backbones.registry import BACKBONES, backbone_names, build_backbone, build_ssd_trunk

__all__ = ["BACKBONES", "Backbone", "backbone_names", "build_backbone", "build_ssd_trunk"]
