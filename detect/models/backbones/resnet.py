"""ResNet (He et al., 2016) for both detector families.

Faster R-CNN, `resnet18/34/50/101`: the C4 layout of the Faster R-CNN paper's ResNet variant:
conv1..layer3 (res4) as the stride-16 trunk, layer4 (res5) + global average pool as the per-RoI head
(14 x 14 RoIs); BatchNorm frozen when trained weights are loaded, trainable from random weights.
Stages for `trainable_layers`: conv1, layer1..layer4 (layer4 is the head).

Faster R-CNN, `resnet18_fpn` .. `resnet101_fpn`: the layout of torchvision's `fasterrcnn_resnet50_fpn`
(Lin et al., 2017): a feature pyramid (256 channels) over C2..C5 plus a max-pool level, so the trunk
returns a list of 5 maps at strides 4, 8, 16, 32, 64; RoIs pool from the first four at 7 x 7 into a
two-layer MLP head (fc6, fc7: 1024 wide).

SSD, `resnet18/34/50/101`: layer2 (stride 8) and layer3 (stride 16) as the first two maps, like VGG's
conv4_3 and fc7, then extra layers with GroupNorm. (NVIDIA's SSD300 ResNet-50 instead runs layer3 at
stride 8, which costs about twice the trunk compute.) Extra-layer sizes follow the input: 3 x 3
stride 2 while a map is larger than 3, then a valid 3 x 3 (3 -> 1) or 2 x 2 (2 -> 1). Stages for
`trainable_layers`: the stem, layer1..layer3.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from detect.errors import ConfigError
from detect.models.backbones.base import Backbone, pyramid_backbone
from detect.models.backbones.freezing import freeze, freeze_below, trainable_stage_count
from detect.models.backbones.registry import register_backbone
from detect.models.backbones.ssd_layers import TrunkWithExtras, conv_out
from detect.models.backbones.weight_files import classifier_model, load_classifier_weights

RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")
FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_ROI_LEVELS = 4


def block_channels(layer: nn.Sequential) -> int:
    """Output channels of a ResNet layer (its last block's last norm)."""
    block = layer[-1]
    return (block.bn3 if hasattr(block, "bn3") else block.bn2).weight.shape[0]  # FrozenBatchNorm2d too


# ---------------------------------------------------------------------------------------------------
# Faster R-CNN


def _resnet_classifier(name: str, pretrained: str, trainable_layers: int | None) -> nn.Module:
    """torchvision's ResNet `name` with its weights, the stages below the trainable ones frozen."""
    trainable = trainable_stage_count(name, trainable_layers, len(RESNET_STAGES), pretrained)
    model = classifier_model(name, pretrained)
    for stage_name in RESNET_STAGES[: len(RESNET_STAGES) - trainable]:
        freeze(getattr(model, stage_name))
        if stage_name == "conv1":
            freeze(model.bn1)  # the stem's norm goes with it (trainable BatchNorm from random weights)
    return model


def build_resnet_c4(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = _resnet_classifier(name, pretrained, trainable_layers)
    trunk = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3
    )
    head = nn.Sequential(model.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    out_channels = block_channels(model.layer3)
    head_out_channels = block_channels(model.layer4)
    return Backbone(trunk, head, out_channels, head_out_channels, roi_output_size=14)


def build_resnet_fpn(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = _resnet_classifier(name.removesuffix("_fpn"), pretrained, trainable_layers)
    stages = ("layer1", "layer2", "layer3", "layer4")
    return pyramid_backbone(
        model,
        return_layers={stage: str(index) for index, stage in enumerate(stages)},
        in_channels_list=[block_channels(getattr(model, stage)) for stage in stages],
        strides=FPN_STRIDES,
        roi_levels=FPN_ROI_LEVELS,
    )


# ---------------------------------------------------------------------------------------------------
# SSD


class ResNetTrunk(TrunkWithExtras):
    """A torchvision ResNet's layer2 (stride 8) and layer3 (stride 16) maps, then extra layers.

    The same layout as VGG's conv4_3 and fc7: at 300 px the maps are 38, 19, 10, 5, 3, 1.
    """

    def __init__(
        self, name: str, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None):
        super().__init__()
        if num_maps < 2:
            raise ConfigError(f"model.ssd: ResNet SSD needs at least 2 feature maps (layer2, layer3), got {num_maps}")
        resnet = load_classifier_weights(getattr(torchvision.models, name)(weights=None), name, pretrained)
        stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer2 = nn.Sequential(stem, resnet.layer1, resnet.layer2)
        self.layer3 = resnet.layer3
        channels = [block_channels(resnet.layer2), block_channels(resnet.layer3)]
        self.out_channels = channels + self.add_extras(channels[-1], self._trunk_sizes(input_size)[1], num_maps - 2)
        stages = [stem, resnet.layer1, resnet.layer2, resnet.layer3]
        freeze_below(stages, trainable_stage_count(name, trainable_layers, len(stages), pretrained))

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        size = conv_out(input_size, 7, 2, 3)  # conv1
        size = conv_out(size, 3, 2, 1)  # max pool
        size = conv_out(size, 3, 2, 1)  # layer2
        return [size, conv_out(size, 3, 2, 1)]  # layer3

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        layer2 = self.layer2(images)
        return [layer2, self.layer3(layer2)]



def build_resnet_ssd_trunk(name: str, num_maps: int, input_size: int, pretrained: str,
                           trainable_layers: int | None, reduced_tail: bool | None) -> ResNetTrunk:
    return ResNetTrunk(name, num_maps, input_size, pretrained, trainable_layers)


for _depth in (18, 34, 50, 101):
    register_backbone(f"resnet{_depth}", two_stage=build_resnet_c4, ssd=build_resnet_ssd_trunk)
for _depth in (18, 34, 50, 101):
    register_backbone(f"resnet{_depth}_fpn", two_stage=build_resnet_fpn)
