"""Where a detector keeps each class's rows in its state dict (read by detect/models/weights.py to carry
rows over by class name when weights are loaded for other classes)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClassRows:
    """Where one class-specific layer of ours (its `weight` and `bias`) keeps each class's rows along
    dim 0: blocks (one per default box of a location for SSD, one for Faster R-CNN) of `per_class`
    rows per class, class 0 (background) first when `background`."""

    pattern: str
    """Our keys without their `weight` / `bias` suffix, a regular expression."""
    per_class: int = 1
    background: bool = True

    def keys(self, state: dict) -> list[str]:
        """The layer's keys in `state`, in the state dict's order."""
        return [key for key in state
                if key.endswith((".weight", ".bias")) and re.fullmatch(self.pattern, key.rsplit(".", 1)[0] + ".")]

    def classes(self, num_classes: int) -> int:
        """Classes with rows in each block, for `num_classes` foreground classes."""
        return num_classes + int(self.background)

    def rows(self, labels: torch.Tensor, num_classes: int, blocks: int) -> torch.Tensor:
        """Row indices [blocks * len * per_class] of `labels` (0: background; foreground labels only
        where there is no background row) in a layer for `num_classes` foreground classes."""
        index = labels if self.background else labels - 1
        within = (index[:, None] * self.per_class + torch.arange(self.per_class)).reshape(-1)
        block = self.classes(num_classes) * self.per_class
        return (torch.arange(blocks)[:, None] * block + within).reshape(-1)


