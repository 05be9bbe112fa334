"""A model behind the detection contract, with what it was trained with: what every backend loads."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class LoadedModel:
    """`model`: forward(images, image_sizes) and postprocess(outputs, image_sizes, scales) as the
    detectors have them; `config`: the resolved Config; `class_names`: label i is class_names[i - 1];
    `category_ids`: COCO-trained models' category id of each label, else None; `device` it runs on."""

    model: nn.Module
    config: object
    class_names: list[str]
    category_ids: list[int] | None
    device: object
