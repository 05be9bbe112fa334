"""A narrow ResNet for detectors that train from random weights on a CPU in minutes, for both families.

    stages = tiny_resnet_stages()     # nn.ModuleList: stem, layer1, layer2, layer3, layer4
    stage strides 4, 4, 8, 16, 32; channels TINY_RESNET_CHANNELS = (32, 32, 64, 128, 256)

torchvision's BasicBlock (two 3 x 3 convolutions with BatchNorm and a shortcut), one or two per stage,
at an eighth of ResNet-18's width from layer2 on. The stem is two 3 x 3 stride-2 convolutions
instead of ResNet's 7 x 7 convolution and max pool: at 192 px that stem alone costs more than this
whole network. At 192 px the network costs about 0.2 GMACs against ResNet-18's 1.1 (to layer3).

There are no ImageNet weights for it: it is the trunk for `pretrained: none`, where a small network
learns faster per second of CPU than a large one. BatchNorm trains (there are no statistics to keep).

Faster R-CNN: stem..layer3 (128 channels, stride 16) as trunk; as head, two fully connected layers of
256 on the flattened 7 x 7 RoI (layer4 on every RoI would cost more than the trunk): the backbone of
the CPU-sized synthetic Faster R-CNN. SSD: layer2, layer3 and layer4 (strides 8, 16, 32) as the first
three maps, then extra layers 128 / 256 wide; the CPU main job's trunk.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from detect.errors import ConfigError
from detect.models.backbones.base import Backbone
from detect.models.backbones.freezing import freeze_below, trainable_stage_count
from detect.models.backbones.registry import register_backbone
from detect.models.backbones.ssd_layers import TrunkWithExtras, conv_out

TINY_RESNET_CHANNELS = (32, 32, 64, 128, 256)  # stem, layer1..layer4
TINY_RESNET_BLOCKS = (1, 2, 2, 1)  # BasicBlocks in layer1..layer4
TINY_RESNET_STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    layers = [BasicBlock(in_channels, out_channels, stride, downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def tiny_resnet_stages() -> nn.ModuleList:
    """The five stages (stem, layer1..layer4), each mapping [B, C_in, H, W] to the next stage's input.

    Shapes for an input [B, 3, H, W]: stem [B, 32, H/4, W/4], layer1 [B, 32, H/4, W/4],
    layer2 [B, 64, H/8, W/8], layer3 [B, 128, H/16, W/16], layer4 [B, 256, H/32, W/32] (sizes round up).
    """
    stem_channels = TINY_RESNET_CHANNELS[0]
    stem = nn.Sequential(*_conv_bn_relu(3, stem_channels // 2, 2), *_conv_bn_relu(stem_channels // 2, stem_channels, 2))
    stages = [stem]
    in_channels = stem_channels
    for index, (out_channels, blocks) in enumerate(zip(TINY_RESNET_CHANNELS[1:], TINY_RESNET_BLOCKS)):
        stages.append(_layer(in_channels, out_channels, blocks, stride=1 if index == 0 else 2))
        in_channels = out_channels
    modules = nn.ModuleList(stages)
    _init_weights(modules)
    return modules


def _init_weights(module: nn.Module) -> None:
    """He initialisation, as torchvision's ResNet; each block's last BatchNorm starts at zero so that
    every residual block begins as the identity (steadier first steps from random weights)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    for layer in module.modules():
        if isinstance(layer, BasicBlock):
            nn.init.zeros_(layer.bn2.weight)


# ---------------------------------------------------------------------------------------------------
# Faster R-CNN

TINY_RESNET_HEAD_WIDTH = 256



def build_tiny_resnet_two_stage(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    if pretrained != "none":
        raise ConfigError(f"model.pretrained: {name} has no trained weights, use none (got '{pretrained}')")
    stages = tiny_resnet_stages()
    # layer4 is not part of this trunk: four stages count
    trainable = trainable_stage_count(name, trainable_layers, len(TINY_RESNET_STAGE_NAMES) - 1, pretrained)
    freeze_below(list(stages[:4]), trainable)
    trunk = nn.Sequential(*stages[:4])
    out_channels, roi_size = TINY_RESNET_CHANNELS[3], 7
    head = tiny_resnet_head(out_channels, roi_size)
    return Backbone(trunk, head, out_channels, TINY_RESNET_HEAD_WIDTH, roi_output_size=roi_size)


def tiny_resnet_head(in_channels: int, roi_size: int) -> nn.Sequential:
    """Pooled RoIs [R, in_channels, roi_size, roi_size] -> [R, TINY_RESNET_HEAD_WIDTH]: two fc layers."""
    return nn.Sequential(
        nn.Flatten(1),
        nn.Linear(in_channels * roi_size * roi_size, TINY_RESNET_HEAD_WIDTH),
        nn.ReLU(inplace=True),
        nn.Linear(TINY_RESNET_HEAD_WIDTH, TINY_RESNET_HEAD_WIDTH),
        nn.ReLU(inplace=True),
    )


# ---------------------------------------------------------------------------------------------------
# SSD


class TinyResNetTrunk(TrunkWithExtras):
    """detect.models.tiny_resnet's layer2 (stride 8), layer3 (16) and layer4 (32) maps, then extra
    layers 128 wide in the middle and 256 out. At 192 px the maps are 24, 12, 6, 3, 1."""

    EXTRA_CHANNELS = (128, 256)

    def __init__(self, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None):
        super().__init__()
        if num_maps < 3:
            raise ConfigError(
                f"model.ssd: tiny_resnet SSD needs at least 3 feature maps (layer2..layer4), got {num_maps}")
        if pretrained != "none":
            raise ConfigError(f"model.pretrained: tiny_resnet has no trained weights, use none (got '{pretrained}')")
        stages = tiny_resnet_stages()
        self.layer2 = nn.Sequential(*stages[:3])
        self.layer3, self.layer4 = stages[3], stages[4]
        extra_channels = self.add_extras(TINY_RESNET_CHANNELS[-1], self._trunk_sizes(input_size)[2], num_maps - 3,
                                         self.EXTRA_CHANNELS)
        self.out_channels = list(TINY_RESNET_CHANNELS[2:]) + extra_channels
        freeze_below(list(stages), trainable_stage_count("tiny_resnet", trainable_layers, len(stages), pretrained))

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        size = conv_out(conv_out(input_size, 3, 2, 1), 3, 2, 1)  # the stem's two stride-2 convolutions
        sizes = [conv_out(size, 3, 2, 1)]  # layer2
        for _ in range(2):  # layer3, layer4
            sizes.append(conv_out(sizes[-1], 3, 2, 1))
        return sizes

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        layer2 = self.layer2(images)
        layer3 = self.layer3(layer2)
        return [layer2, layer3, self.layer4(layer3)]



def build_tiny_resnet_ssd_trunk(name: str, num_maps: int, input_size: int, pretrained: str,
                                trainable_layers: int | None, reduced_tail: bool | None) -> TinyResNetTrunk:
    return TinyResNetTrunk(num_maps, input_size, pretrained, trainable_layers)


register_backbone("tiny_resnet", two_stage=build_tiny_resnet_two_stage, ssd=build_tiny_resnet_ssd_trunk)
