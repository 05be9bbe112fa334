"""MobileNetV3 (Howard et al., 2019) for both detector families.

Stages for `trainable_layers`: the stem, each strided block with the blocks after it, and the last 1x1
convolution (6 stages), as torchvision's detectors count them.

Faster R-CNN, `mobilenet_v3_large`, `mobilenet_v3_small`: the C4 cut of torchvision's MobileNetV3
`features`: the blocks up to the last stride-16 one as trunk (112 / 48 channels), the stride-32 blocks
+ global average pool as head (960 / 576); BatchNorm frozen with trained weights, as for ResNet.

Faster R-CNN, `mobilenet_v3_large_fpn`, `mobilenet_v3_large_320_fpn`: the layout of torchvision's
`fasterrcnn_mobilenet_v3_large_fpn` (and of its 320-pixel variant, the same network): a feature pyramid
(256 channels) over MobileNetV3-Large's last two stages (the output of the last strided block, 160
channels, and of the final 1x1 conv, 960 channels, both at stride 32) plus a max-pool level: 3 maps at
strides 32, 32, 64. RoIs pool from the first map at 7 x 7 into the same MLP head. BatchNorm as
torchvision builds it for its detector: FrozenBatchNorm2d with trained weights, BatchNorm2d from random
ones, both with eps 1e-5 (not the classifier's 1e-3). The two names differ only in the COCO checkpoint
`pretrained: coco` loads (detect/models/weights.py); input size and RPN settings come from the config.

SSD (SSDlite), `mobilenet_v3_large`, `mobilenet_v3_small` (the paper's section 6.3), in the layout of
torchvision's `ssdlite320_mobilenet_v3_large`: the first map is the expansion layer of the last
stride-16 block (C4: 672 / 288 channels), the second the end of the network (C5), then
depthwise-separable extra layers (1 x 1 to half width, 3 x 3 depthwise stride 2, 1 x 1), all with
BatchNorm and ReLU6. At 320 px the maps are 20, 10, 5, 3, 2, 1. `reduced_tail` halves the last stage's
channels (the paper's table 6; torchvision's choice without ImageNet weights).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import ConfigError
from detect.models.backbones.base import Backbone, pyramid_backbone
from detect.models.backbones.freezing import freeze, frozen_batchnorm, trainable_stage_count
from detect.models.backbones.registry import register_backbone
from detect.models.backbones.ssd_layers import SSDLITE_NORM, conv_out, normal_init, separable_extra_block
from detect.models.backbones.weight_files import classifier_model, load_classifier_weights, uses_frozen_batchnorm

# The FPN layout of torchvision's fasterrcnn_mobilenet_v3_large_fpn: two stride-32 maps and the max-pool
# level. torchvision pools RoIs from both stride-32 maps, but with equal strides its level mapper sends
# every RoI to the first, so only the first is pooled from here (the same numbers, one RoIAlign less).
MOBILENET_FPN_STRIDES = (32, 32, 64)

MOBILENET_FPN_ROI_LEVELS = 1

SSDLITE_EXTRA_CHANNELS = (512, 256, 256, 128)  # then 128 for any further map



def mobilenet_v3_stage_starts(features: nn.Sequential) -> list[int]:
    """Indices into MobileNetV3 `features` where its stages begin: the stem, every strided block
    (torchvision marks them `_is_cn`) and the last 1x1 convolution, as torchvision's detectors count."""
    strided = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    return [0, *strided, len(features) - 1]


def freeze_mobilenet_v3(features: nn.Sequential, trainable: int) -> None:
    """Freeze all but the top `trainable` stages of MobileNetV3 `features` (0: all frozen)."""
    starts = mobilenet_v3_stage_starts(features)
    first_trainable = len(features) if trainable == 0 else starts[len(starts) - trainable]
    freeze(features[:first_trainable])


# ---------------------------------------------------------------------------------------------------
# Faster R-CNN


def build_mobilenet_v3_c4(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = classifier_model(name, pretrained)
    if uses_frozen_batchnorm(pretrained):
        model = frozen_batchnorm(model)
    features = model.features
    starts = mobilenet_v3_stage_starts(features)
    freeze_mobilenet_v3(features, trainable_stage_count(name, trainable_layers, len(starts), pretrained))
    c5 = starts[-2]  # the stride-32 block: everything before it runs at stride 16
    trunk = features[:c5]
    head = nn.Sequential(*features[c5:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    out_channels = trunk[-1].out_channels
    head_out_channels = features[-1].out_channels
    return Backbone(trunk, head, out_channels, head_out_channels, roi_output_size=14)


def build_mobilenet_v3_fpn(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    classifier_name = "mobilenet_v3_large"
    # torchvision's detector hands MobileNetV3 a plain norm layer, so its BatchNorm eps is 1e-5 where the
    # classifier's is 1e-3; its COCO weights were trained that way.
    norm_layer = FrozenBatchNorm2d if uses_frozen_batchnorm(pretrained) else nn.BatchNorm2d
    model = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=norm_layer)
    features = load_classifier_weights(model, classifier_name, pretrained).features
    starts = mobilenet_v3_stage_starts(features)
    freeze_mobilenet_v3(features, trainable_stage_count(name, trainable_layers, len(starts), pretrained))
    levels = starts[-2:]  # the last strided block and the final 1x1 conv
    return pyramid_backbone(
        features,
        return_layers={str(block): str(level) for level, block in enumerate(levels)},
        in_channels_list=[features[block].out_channels for block in levels],
        strides=MOBILENET_FPN_STRIDES,
        roi_levels=MOBILENET_FPN_ROI_LEVELS,
    )


# ---------------------------------------------------------------------------------------------------
# SSD


class MobileNetV3Trunk(nn.Module):
    """SSDlite's MobileNetV3: C4 (the last stride-16 block's expansion), C5, depthwise extra layers.

    Module names follow torchvision's SSDLiteFeatureExtractorMobileNet (`features.0`, `features.1`,
    `extra.i`), so its state dict maps onto ours by prefix (detect/models/weights.py).
    """

    def __init__(self, name: str, num_maps: int, pretrained: str = "none", trainable_layers: int | None = None,
                 reduced_tail: bool = False):
        super().__init__()
        if num_maps < 2:
            raise ConfigError(f"model.ssd: MobileNetV3 SSD needs at least 2 feature maps (C4, C5), got {num_maps}")
        if reduced_tail and pretrained != "none":
            raise ConfigError(f"model.ssd.reduced_tail: {name} ImageNet weights have the full tail; set it false "
                              f"or model.pretrained none")
        model = classifier_model(name, pretrained, norm_layer=SSDLITE_NORM, reduced_tail=reduced_tail)
        if pretrained == "none":
            normal_init(model)
        backbone = model.features
        starts = mobilenet_v3_stage_starts(backbone)
        freeze_mobilenet_v3(backbone, trainable_stage_count(name, trainable_layers, len(starts), pretrained))
        c4 = starts[-2]  # the stride-32 block: its expansion layer still runs at stride 16
        self.features = nn.Sequential(
            nn.Sequential(*backbone[:c4], backbone[c4].block[0]),
            nn.Sequential(backbone[c4].block[1:], *backbone[c4 + 1:]),
        )
        self.halvings_to_c4 = len(starts) - 2  # the stem and every strided block before C4
        channels = [backbone[c4].block[0].out_channels, backbone[-1].out_channels]
        extra_channels = [*SSDLITE_EXTRA_CHANNELS, *[SSDLITE_EXTRA_CHANNELS[-1]] * num_maps][: num_maps - 2]
        self.extra = nn.ModuleList()
        in_ch = channels[-1]
        for out_ch in extra_channels:
            self.extra.append(separable_extra_block(in_ch, out_ch))
            in_ch = out_ch
        normal_init(self.extra)
        self.out_channels = channels + extra_channels

    def feature_map_sizes(self, input_size: int) -> list[tuple[int, int]]:
        size = input_size
        for _ in range(self.halvings_to_c4):
            size = conv_out(size, 3, 2, 1)  # every strided layer here pads (k - 1) / 2: a halving rounded up
        sizes = [size]
        for _ in range(len(self.out_channels) - 1):
            sizes.append(conv_out(sizes[-1], 3, 2, 1))
        return [(s, s) for s in sizes]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = images
        for block in [*self.features, *self.extra]:
            x = block(x)
            maps.append(x)
        return maps



def build_mobilenet_v3_ssd_trunk(name: str, num_maps: int, input_size: int, pretrained: str,
                                 trainable_layers: int | None, reduced_tail: bool | None) -> MobileNetV3Trunk:
    reduced = pretrained == "none" if reduced_tail is None else reduced_tail
    return MobileNetV3Trunk(name, num_maps, pretrained, trainable_layers, reduced)


register_backbone("mobilenet_v3_large", two_stage=build_mobilenet_v3_c4, ssd=build_mobilenet_v3_ssd_trunk)
register_backbone("mobilenet_v3_small", two_stage=build_mobilenet_v3_c4, ssd=build_mobilenet_v3_ssd_trunk)
register_backbone("mobilenet_v3_large_fpn", two_stage=build_mobilenet_v3_fpn)
register_backbone("mobilenet_v3_large_320_fpn", two_stage=build_mobilenet_v3_fpn)
