"""SSD's prediction head: for each feature map, a layer predicting every default box's class scores
and encoded offsets. The block is a parameter: SSD's 3 x 3 convolution (`conv3x3_block`) or SSDlite's
depthwise-separable block (ssdlite.py), so both detectors share one head and one output order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def conv3x3_block(in_channels: int, out_channels: int) -> nn.Module:
    """SSD's prediction layer: one 3 x 3 convolution."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class SSDHead(nn.Module):
    """One classification and one box prediction block per feature map: `block(in, out)` makes each
    (SSD: a 3 x 3 convolution; SSDlite: a depthwise-separable one, detect/models/ssdlite.py).

    forward(maps) -> cls_logits [B, A, C + 1], box_regression [B, A, 4], in the default boxes' order
    (map, then cell row-major, then the cell's boxes).
    """

    def __init__(self, in_channels: list[int], boxes_per_cell: list[int], num_classes: int,
                 block: Callable[[int, int], nn.Module] = conv3x3_block):
        super().__init__()
        self.num_outputs = num_classes + 1
        self.cls_convs = nn.ModuleList(block(c, n * self.num_outputs) for c, n in zip(in_channels, boxes_per_cell))
        self.box_convs = nn.ModuleList(block(c, n * 4) for c, n in zip(in_channels, boxes_per_cell))
        for conv in [*self.cls_convs, *self.box_convs]:
            for layer in conv.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.xavier_uniform_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)

    @staticmethod
    def _flatten(x: torch.Tensor, width: int) -> torch.Tensor:
        batch, _, height, map_width = x.shape
        return x.view(batch, -1, width, height, map_width).permute(0, 3, 4, 1, 2).reshape(batch, -1, width)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits = torch.cat([self._flatten(conv(x), self.num_outputs) for conv, x in zip(self.cls_convs, maps)], 1)
        box_regression = torch.cat([self._flatten(conv(x), 4) for conv, x in zip(self.box_convs, maps)], 1)
        return cls_logits, box_regression
