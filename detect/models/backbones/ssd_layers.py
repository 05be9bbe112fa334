"""The layers SSD adds to a trunk: extra feature maps after the classification network's own, and
SSDlite's depthwise-separable blocks (its extra layers here, its prediction head in ssdlite.py).

An SSD trunk maps images [B, 3, H, W] to a list of feature maps, largest first, and declares
`out_channels` (one per map) and `feature_map_sizes(input_size)` (their (h, w) for a square input).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from detect.errors import ConfigError


def conv_out(size: int, kernel: int, stride: int, padding: int, ceil: bool = False) -> int:
    """A convolution's (or pool's) output side for an input side of `size`."""
    span = size + 2 * padding - kernel
    return (math.ceil(span / stride) if ceil else span // stride) + 1


def extra_block(in_ch: int, mid: int, out: int, kernel: int, stride: int, padding: int, norm: bool) -> nn.Sequential:
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
        size = conv_out(size, *spec[2:])
    return specs


def xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class TrunkWithExtras(nn.Module):
    """Shared by the SSD trunks: two maps from the classification network (`_base_maps`), then the
    extra layers, each on the previous map. Subclasses set `specs`, `extras` and `_trunk_sizes`."""

    def add_extras(self, in_channels: int, base_map_size: int, num_extras: int, channels=None) -> list[int]:
        """Sets `specs` and `extras` (normalized, Xavier-initialised) for `num_extras` maps after a base
        map of `base_map_size` with `in_channels`; returns the extras' output channels."""
        self.specs = size_driven_extras(base_map_size, num_extras, channels)
        self.extras = nn.ModuleList()
        for spec in self.specs:
            self.extras.append(extra_block(in_channels, *spec, norm=True))
            in_channels = spec[1]
        xavier_init(self.extras)
        return [spec[1] for spec in self.specs]

    def feature_map_sizes(self, input_size: int) -> list[tuple[int, int]]:
        sizes = self._trunk_sizes(input_size)
        for spec in self.specs:
            sizes.append(conv_out(sizes[-1], *spec[2:]))
        return [(s, s) for s in sizes]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = self._base_maps(images)
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps


# SSDlite's BatchNorm (torchvision's, after the TensorFlow Object Detection API's settings).
SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


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

