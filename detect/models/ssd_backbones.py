"""SSD trunks: a classification network cut for dense prediction, plus the extra feature layers.

Every trunk maps images [B, 3, H, W] to a list of feature maps, largest first, and declares
`out_channels` (one per map) and `feature_map_sizes(input_size)` (their (h, w) for a square input).

`vgg16` (Liu et al., 2016): conv1_1..conv5_3 with pool3 rounding up (so 300 px gives 38 x 38) and
pool5 made 3 x 3 stride 1; fc6 becomes a 3 x 3 convolution with dilation 6 and fc7 a 1 x 1
convolution, both 1024 wide; with ImageNet weights their kernels are subsampled from fc6/fc7 (every
4th unit; every 3rd of fc6's 7 x 7 positions, which the dilation compensates). The maps are conv4_3
(after a learned L2 normalisation, scale initialised to 20), fc7, then the extra layers: the paper's
SSD300 layers for 6 maps, SSD512's for 7.

`resnet18/34/50/101`: layer2 (stride 8) and layer3 (stride 16) as the first two maps, like VGG's
conv4_3 and fc7, then extra layers with GroupNorm. (NVIDIA's SSD300 ResNet-50 instead runs layer3 at
stride 8, which costs about twice the trunk compute.) Extra-layer sizes follow the input: 3 x 3
stride 2 while a map is larger than 3, then a valid 3 x 3 (3 -> 1) or 2 x 2 (2 -> 1).

`mobilenet_v3_large`, `mobilenet_v3_small`: SSDlite's MobileNetV3 (Howard et al., 2019, section 6.3),
in the layout of torchvision's `ssdlite320_mobilenet_v3_large`: the first map is the expansion layer
of the last stride-16 block (C4: 672 / 288 channels), the second the end of the network (C5), then
depthwise-separable extra layers (1 x 1 to half width, 3 x 3 depthwise stride 2, 1 x 1), all with
BatchNorm and ReLU6. At 320 px the maps are 20, 10, 5, 3, 2, 1. `reduced_tail` halves the last
stage's channels (the paper's table 6; torchvision's choice without ImageNet weights).

`tiny_resnet` (detect.models.tiny_resnet, random weights only): layer2, layer3 and layer4 (strides 8,
16, 32) as the first three maps, then extra layers 128 / 256 wide; the CPU main job's trunk.

ImageNet or local weights come from detect.models.backbones (`load_classifier_weights`).
`trainable_layers` counts stages from the top (VGG: 5 conv blocks; ResNet: conv1, layer1..layer3);
None trains everything with random weights, and all but the first stage with loaded weights.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from detect.errors import ConfigError
from detect.models.backbones import (
    classifier_model,
    freeze_mobilenet_v3,
    load_classifier_weights,
    mobilenet_v3_stage_starts,
)
from detect.models.tiny_resnet import TINY_RESNET_CHANNELS, tiny_resnet_stages

# (middle channels, out channels, kernel, stride, padding) of each extra layer pair (1x1, then kxk).
# From the SSD paper's Caffe models: SSD300's conv8_2..conv11_2 and SSD512's conv8_2..conv12_2.
VGG_EXTRAS = {
    4: [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)],
    5: [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1)],
}
VGG_POOL_INDICES = (4, 9, 16, 23, 30)  # max pools in torchvision's vgg16().features
VGG_CONV4_3_END = 23  # features[:23] ends with conv4_3's ReLU
L2NORM_SCALE = 20.0


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels with a learned per-channel scale (ParseNet)."""

    def __init__(self, channels: int, scale: float = L2NORM_SCALE, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.float().pow(2).sum(dim=1, keepdim=True).sqrt().add(self.eps)
        return (x.float() / norm * self.weight.view(1, -1, 1, 1)).to(x.dtype)


def _conv_out(size: int, kernel: int, stride: int, padding: int, ceil: bool = False) -> int:
    span = size + 2 * padding - kernel
    return (math.ceil(span / stride) if ceil else span // stride) + 1


def _extra_block(in_ch: int, mid: int, out: int, kernel: int, stride: int, padding: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, mid, 1, bias=not norm)]
    # GroupNorm, not BatchNorm: the last maps are 1 x 1, where BatchNorm fails on a batch of one.
    layers += [nn.GroupNorm(32, mid)] if norm else []
    layers += [nn.ReLU(inplace=True), nn.Conv2d(mid, out, kernel, stride=stride, padding=padding, bias=not norm)]
    layers += [nn.GroupNorm(32, out)] if norm else []
    layers += [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def size_driven_extras(
    first_size: int, count: int, channels: tuple[int, int] | None = None
) -> list[tuple[int, int, int, int, int]]:
    """Extra-layer specs that halve the map while it is larger than 3, then shrink it to 1.

    `channels`: (middle, out) of every layer; None: SSD300's widths (256, 512 twice, then 128, 256)."""
    specs, size = [], first_size
    for index in range(count):
        mid, out = channels or ((256, 512) if index < 2 else (128, 256))
        if size > 3:
            spec = (mid, out, 3, 2, 1)
        elif size in (2, 3):
            spec = (mid, out, size, 1, 0)
        else:
            raise ConfigError(
                f"model.ssd: the input is too small for {count} extra feature maps (map {index + 2} would "
                f"be smaller than 1 x 1); raise input.size or use fewer aspect_ratios entries"
            )
        specs.append(spec)
        size = _conv_out(size, *spec[2:])
    return specs


def _xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _freeze(modules: list[nn.Module]) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def _trainable(name: str, trainable_layers: int | None, stages: int, pretrained: str) -> int:
    if trainable_layers is None:
        return stages if pretrained == "none" else stages - 1
    if not 0 <= trainable_layers <= stages:
        raise ConfigError(f"model.trainable_layers: {trainable_layers} is out of range for SSD {name} (0..{stages})")
    return trainable_layers


class _TrunkWithExtras(nn.Module):
    """Shared by the SSD trunks: two maps from the classification network (`_base_maps`), then the
    extra layers, each on the previous map. Subclasses set `specs`, `extras` and `_trunk_sizes`."""

    def add_extras(self, in_channels: int, base_map_size: int, num_extras: int, channels=None) -> list[int]:
        """Sets `specs` and `extras` (normalised, Xavier-initialised) for `num_extras` maps after a base
        map of `base_map_size` with `in_channels`; returns the extras' output channels."""
        self.specs = size_driven_extras(base_map_size, num_extras, channels)
        self.extras = nn.ModuleList()
        for spec in self.specs:
            self.extras.append(_extra_block(in_channels, *spec, norm=True))
            in_channels = spec[1]
        _xavier_init(self.extras)
        return [spec[1] for spec in self.specs]

    def feature_map_sizes(self, input_size: int) -> list[tuple[int, int]]:
        sizes = self._trunk_sizes(input_size)
        for spec in self.specs:
            sizes.append(_conv_out(sizes[-1], *spec[2:]))
        return [(s, s) for s in sizes]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = self._base_maps(images)
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps


class VGGTrunk(_TrunkWithExtras):
    """SSD's VGG16: conv4_3 (L2-normalised), fc7, and the extra layers."""

    def __init__(self, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None):
        super().__init__()
        if num_maps < 2:
            raise ConfigError(f"model.ssd: VGG16 SSD needs at least 2 feature maps (conv4_3, fc7), got {num_maps}")
        vgg = load_classifier_weights(torchvision.models.vgg16(weights=None), "vgg16", pretrained)
        features = vgg.features
        features[VGG_POOL_INDICES[2]].ceil_mode = True  # 75 -> 38 at 300 px, as Caffe rounds
        features[VGG_POOL_INDICES[4]] = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        fc6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
        fc7 = nn.Conv2d(1024, 1024, kernel_size=1)
        if pretrained == "none":
            _xavier_init(nn.ModuleList([fc6, fc7]))
        else:
            _subsample_fc_weights(vgg.classifier, fc6, fc7)
        self.conv4_3 = features[:VGG_CONV4_3_END]
        self.l2norm = L2Norm(512)
        self.fc7 = nn.Sequential(*features[VGG_CONV4_3_END:], fc6, nn.ReLU(inplace=True), fc7, nn.ReLU(inplace=True))
        fc7_size = self._trunk_sizes(input_size)[1]
        specs = VGG_EXTRAS.get(num_maps - 2) or size_driven_extras(fc7_size, num_maps - 2)
        self.extras = nn.ModuleList()
        in_channels = 1024
        for spec in specs:
            self.extras.append(_extra_block(in_channels, *spec, norm=False))
            in_channels = spec[1]
        _xavier_init(self.extras)
        self.specs = specs
        self.out_channels = [512, 1024] + [spec[1] for spec in specs]

        blocks = [range(0, 5), range(5, 10), range(10, 17), range(17, 24), range(24, 31)]
        trainable = _trainable("vgg16", trainable_layers, len(blocks), pretrained)
        _freeze([features[i] for block in blocks[: len(blocks) - trainable] for i in block])

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        """conv4_3 and fc7 sizes: pools 1, 2 round down, pool 3 up, pool 4 down, pool 5 keeps the size."""
        size = _conv_out(_conv_out(_conv_out(input_size, 2, 2, 0), 2, 2, 0), 2, 2, 0, ceil=True)
        return [size, _conv_out(size, 2, 2, 0)]

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        conv4_3 = self.conv4_3(images)
        return [self.l2norm(conv4_3), self.fc7(conv4_3)]


def _subsample_fc_weights(classifier: nn.Sequential, fc6: nn.Conv2d, fc7: nn.Conv2d) -> None:
    """fc6 (4096 x 512*7*7) and fc7 (4096 x 4096) -> the 1024-wide convolutions, by decimation."""
    fc6_linear, fc7_linear = classifier[0], classifier[3]
    with torch.no_grad():
        fc6.weight.copy_(fc6_linear.weight.view(4096, 512, 7, 7)[::4, :, ::3, ::3])
        fc6.bias.copy_(fc6_linear.bias[::4])
        fc7.weight.copy_(fc7_linear.weight.view(4096, 4096, 1, 1)[::4, ::4])
        fc7.bias.copy_(fc7_linear.bias[::4])


class ResNetTrunk(_TrunkWithExtras):
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
        channels = [_block_channels(resnet.layer2), _block_channels(resnet.layer3)]
        self.out_channels = channels + self.add_extras(channels[-1], self._trunk_sizes(input_size)[1], num_maps - 2)
        stages = [stem, resnet.layer1, resnet.layer2, resnet.layer3]
        trainable = _trainable(name, trainable_layers, len(stages), pretrained)
        _freeze(stages[: len(stages) - trainable])

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        size = _conv_out(input_size, 7, 2, 3)  # conv1
        size = _conv_out(size, 3, 2, 1)  # max pool
        size = _conv_out(size, 3, 2, 1)  # layer2
        return [size, _conv_out(size, 3, 2, 1)]  # layer3

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        layer2 = self.layer2(images)
        return [layer2, self.layer3(layer2)]


def _block_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    return (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features


# SSDlite's BatchNorm (torchvision's, after the TensorFlow Object Detection API's settings).
SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
SSDLITE_EXTRA_CHANNELS = (512, 256, 256, 128)  # then 128 for any further map


def normal_init(module: nn.Module, std: float = 0.03) -> None:
    """SSDlite's initialisation of its convolutions: N(0, std) weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def conv_norm_relu6(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return Conv2dNormActivation(in_ch, out_ch, kernel, stride=stride, groups=groups, norm_layer=SSDLITE_NORM,
                                activation_layer=nn.ReLU6)


def separable_extra_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """SSDlite's extra layer: 1 x 1 to out/2, 3 x 3 depthwise stride 2, 1 x 1 to out."""
    mid = out_ch // 2
    return nn.Sequential(
        conv_norm_relu6(in_ch, mid, 1), conv_norm_relu6(mid, mid, 3, stride=2, groups=mid),
        conv_norm_relu6(mid, out_ch, 1)
    )


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
        freeze_mobilenet_v3(backbone, _trainable(name, trainable_layers, len(starts), pretrained))
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
            size = _conv_out(size, 3, 2, 1)  # every strided layer here pads (k - 1) / 2: a halving rounded up
        sizes = [size]
        for _ in range(len(self.out_channels) - 1):
            sizes.append(_conv_out(sizes[-1], 3, 2, 1))
        return [(s, s) for s in sizes]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = images
        for block in [*self.features, *self.extra]:
            x = block(x)
            maps.append(x)
        return maps


class TinyResNetTrunk(_TrunkWithExtras):
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
        trainable = _trainable("tiny_resnet", trainable_layers, len(stages), pretrained)
        _freeze(list(stages[: len(stages) - trainable]))

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        size = _conv_out(_conv_out(input_size, 3, 2, 1), 3, 2, 1)  # the stem's two stride-2 convolutions
        sizes = [_conv_out(size, 3, 2, 1)]  # layer2
        for _ in range(2):  # layer3, layer4
            sizes.append(_conv_out(sizes[-1], 3, 2, 1))
        return sizes

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        layer2 = self.layer2(images)
        layer3 = self.layer3(layer2)
        return [layer2, layer3, self.layer4(layer3)]


SSD_TRUNKS = ("vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large", "mobilenet_v3_small",
              "tiny_resnet")


def build_ssd_trunk(
    name: str, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None,
    reduced_tail: bool | None = None,
) -> nn.Module:
    """The SSD trunk `name` giving `num_maps` feature maps for a square input of `input_size` pixels.

    reduced_tail (MobileNetV3 only): None reduces it exactly when there are no pretrained weights."""
    if name == "vgg16":
        return VGGTrunk(num_maps, input_size, pretrained, trainable_layers)
    if name.startswith("mobilenet_v3"):
        reduced = pretrained == "none" if reduced_tail is None else reduced_tail
        return MobileNetV3Trunk(name, num_maps, pretrained, trainable_layers, reduced)
    if name == "tiny_resnet":
        return TinyResNetTrunk(num_maps, input_size, pretrained, trainable_layers)
    if name in SSD_TRUNKS:
        return ResNetTrunk(name, num_maps, input_size, pretrained, trainable_layers)
    raise ConfigError(f"model.backbone: '{name}' has no SSD trunk (allowed for SSD: {', '.join(SSD_TRUNKS)})")
