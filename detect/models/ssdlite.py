"""SSDlite (Sandler et al., 2018, section 6.2): SSD with depthwise-separable prediction layers.

The detector is our SSD (ssd.py: default boxes, matching, multibox loss, batched postprocess) with
one change, the head: each map's classification and box predictions come from a 3 x 3 depthwise
convolution (BatchNorm, ReLU6) followed by a 1 x 1 convolution, instead of a full 3 x 3 convolution.
With the MobileNetV3 trunk (backbones/mobilenet_v3.py) this is the layout of torchvision's
`ssdlite320_mobilenet_v3_large`; detect/models/weights.py maps its state dict onto ours.
"""

from __future__ import annotations

from torch import nn

from detect.models.backbones.ssd_layers import conv_norm_relu6, normal_init
from detect.models.class_rows import ClassRows
from detect.models.registry import DETECTORS
from detect.models.ssd import SSD
from detect.models.ssd_head import SSDHead


def separable_prediction_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3 x 3 depthwise convolution + BatchNorm + ReLU6, then a 1 x 1 projection to the predictions."""
    return nn.Sequential(
        conv_norm_relu6(in_channels, in_channels, 3, groups=in_channels),
        nn.Conv2d(in_channels, out_channels, 1),
    )


def ssdlite_head(in_channels: list[int], boxes_per_cell: list[int], num_classes: int) -> SSDHead:
    """SSD's head (same outputs and order) with separable blocks, initialised as torchvision's SSDlite."""
    head = SSDHead(in_channels, boxes_per_cell, num_classes, block=separable_prediction_block)
    normal_init(head)
    return head


@DETECTORS.register("ssdlite")
class SSDLite(SSD):
    """SSD with the separable head; its weights and inputs NHWC (depthwise convolutions are fast there)."""

    class_rows = (ClassRows(r"head\.cls_convs\.\d+\.1\."),)  # the 1 x 1 after each depthwise block
    channels_last_by_default = True
    make_head = staticmethod(ssdlite_head)
