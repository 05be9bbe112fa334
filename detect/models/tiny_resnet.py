"""A narrow ResNet for detectors that train from random weights on a CPU in minutes.

    stages = tiny_resnet_stages()     # nn.ModuleList: stem, layer1, layer2, layer3, layer4
    stage strides 4, 4, 8, 16, 32; channels TINY_RESNET_CHANNELS = (32, 32, 64, 128, 256)

torchvision's BasicBlock (two 3 x 3 convolutions with BatchNorm and a shortcut), one or two per stage,
at an eighth of ResNet-18's width from layer2 on. The stem is two 3 x 3 stride-2 convolutions
instead of ResNet's 7 x 7 convolution and max pool: at 192 px that stem alone costs more than this
whole network. At 192 px the network costs about 0.2 GMACs against ResNet-18's 1.1 (to layer3).

There are no ImageNet weights for it: it is the trunk for `pretrained: none`, where a small network
learns faster per second of CPU than a large one. BatchNorm trains (there are no statistics to keep).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock

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
