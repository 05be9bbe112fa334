"""Which backbone stages train: `model.trainable_layers`, with one rule for every backbone and detector.

Every backbone counts its stages bottom to top (VGG16: its five conv blocks; ResNet: conv1, layer1..;
MobileNetV3: the stem, each strided block with the blocks after it, and the last 1x1 convolution).
`trainable_layers` says how many, counted from the top, keep `requires_grad`; the rest are frozen.
None: every stage trains from random weights (freezing random stages would only hurt); with loaded
weights (ImageNet, a file, or a whole detector's) every stage but the lowest, whose edge and colour
filters the weights already hold.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import ConfigError


def trainable_stage_count(name: str, trainable_layers: int | None, stages: int, pretrained: str) -> int:
    """How many of backbone `name`'s `stages` train (see the module docstring); a value out of range is
    a one-line ConfigError."""
    if trainable_layers is None:
        return stages if pretrained == "none" else stages - 1
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= stages:
        raise ConfigError(
            f"model.trainable_layers: {trainable_layers!r} is out of range for {name} (allowed: 0..{stages})"
        )
    return trainable_layers


def freeze(modules: nn.Module | Iterable[nn.Module]) -> None:
    """Switch off `requires_grad` for every parameter of `modules` (one module or several)."""
    for module in [modules] if isinstance(modules, nn.Module) else modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def freeze_below(stages: list[nn.Module], trainable: int) -> None:
    """Freeze all but the top `trainable` of `stages` (bottom to top)."""
    freeze(stages[: len(stages) - trainable])


def frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `module` by a FrozenBatchNorm2d holding the same statistics."""
    for child_name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, child_name, frozen)
        else:
            frozen_batchnorm(child)
    return module

