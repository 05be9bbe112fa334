"""What a two-stage detector's backbone is: a trunk and its per-RoI head, with the numbers that wire them
(an SSD trunk's contract is in ssd_layers.py).

    backbone.trunk             nn.Module: images float32 [B, 3, H, W] -> features [B, out_channels, H/16, W/16]
                               (a pyramid: a list of maps, one per stride)
    backbone.head              nn.Module: pooled RoIs [R, out_channels, s, s] -> [R, head_out_channels]
    backbone.out_channels      channels of the trunk's feature map(s)
    backbone.stride            16, or one stride per pyramid map
    backbone.head_out_channels width of the per-RoI feature
    backbone.roi_output_size   the RoI pooling size the head was designed for (7 VGG, 14 ResNet C4)
    backbone.roi_levels        how many pyramid maps RoIs pool from (the first ones)
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

# The FPN layout of torchvision's fasterrcnn_resnet50_fpn: 256-channel maps, RoIs into a 1024-wide MLP.
FPN_CHANNELS = 256
FPN_HEAD_WIDTH = 1024


class Backbone(nn.Module):
    """A trunk and its per-RoI head, with the numbers the detector needs to wire them.

    A single-map trunk has an int `stride`; a pyramid trunk returns a list of maps, `stride` holds one
    stride per map, and RoIs pool from the first `roi_levels` of them.
    """

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        out_channels: int,
        head_out_channels: int,
        roi_output_size: int,
        stride: int | tuple[int, ...] = 16,
        roi_levels: int = 1,
    ):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.out_channels = out_channels
        self.head_out_channels = head_out_channels
        self.roi_output_size = roi_output_size
        self.stride = stride
        self.roi_levels = roi_levels

    @property
    def is_pyramid(self) -> bool:
        return isinstance(self.stride, tuple)

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.trunk(images)



class PyramidTrunk(BackboneWithFPN):
    """torchvision's BackboneWithFPN (`body`, `fpn`: the parameter names of its detectors), returning
    the maps as a list, finest first: images [B, 3, H, W] -> [[B, 256, H / s, W / s] for s in strides]."""

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(super().forward(images).values())



def pyramid_backbone(body: nn.Module, return_layers: dict[str, str], in_channels_list: list[int],
                     strides: tuple[int, ...], roi_levels: int) -> Backbone:
    """A feature pyramid (FPN_CHANNELS wide, plus a max-pool level) over `body`'s `return_layers`, with
    torchvision's two-layer MLP head on 7 x 7 RoIs pooled from the first `roi_levels` maps."""
    trunk = PyramidTrunk(body, return_layers=return_layers, in_channels_list=in_channels_list,
                         out_channels=FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    head = TwoMLPHead(FPN_CHANNELS * 7 * 7, FPN_HEAD_WIDTH)
    return Backbone(trunk, head, FPN_CHANNELS, FPN_HEAD_WIDTH, roi_output_size=7, stride=strides,
                    roi_levels=roi_levels)
