"""torchvision's own detection models (`fasterrcnn_resnet50_fpn`, `retinanet_resnet50_fpn`,
`ssd300_vgg16`, ...) behind our model contract, for side-by-side benchmarks on the same data.

Same pixels for both: the model input is already resized (by the config's `input` pipeline) and
normalised with `input.mean` / `input.std` (on the device by detect.data.normalise.normalise_batch,
or in the loader), as for our models. The wrapper undoes that normalisation (back to 0..1 pixels) and
lets the torchvision model normalise with its own mean and std, which is what its weights expect;
its transform's resize is switched off (`keep_input_size`), so it sees exactly the pixels our model
sees, at our resolution, not at its own `min_size` / `max_size`. Pick a config whose input size suits
the model (e.g. 300 fixed for `ssd300_vgg16`). Its detections come back in the resized
pixels and `postprocess` divides them by `scale`, as for our models.

Weights: `weights=None` (random) unless a local state dict is given; the ImageNet backbone weights are
never fetched (`weights_backbone=None`). The class count is ours plus background, so a state dict must
come from a model trained on this data's classes (labels 1..C, 0 background).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torchvision
from torch import nn

from detect.errors import CheckpointError, ConfigError
from detect.safe_load import safe_torch_load
from detect.models.torchvision_peer import TorchvisionFasterRCNN


def _same_size(image: torch.Tensor, target: dict | None):
    return image, target


def keep_input_size(model: nn.Module) -> nn.Module:
    """Switch off the resize in a torchvision detection model's GeneralizedRCNNTransform (in place).

    Its postprocess then maps boxes from the input size to the same size: a scale of 1."""
    model.transform.resize = _same_size  # an instance attribute shadows the method
    return model


class TorchvisionDetector(TorchvisionFasterRCNN):
    """A torchvision detection model taking our normalised batches (see the module docstring).

    forward(images [B, 3, H, W] normalised with mean/std, image_sizes [B, 2], targets=None) and
    postprocess(outputs, image_sizes, scales) as in detect/models/__init__.py.
    """

    def __init__(self, model: nn.Module, num_classes: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__(keep_input_size(model), num_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[dict] | None = None):
        pixels = images * self.std + self.mean  # 0..1 pixels: the torchvision model normalises itself
        return super().forward(pixels, image_sizes, targets)


def torchvision_detection_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def build_torchvision_detector(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
                               weights_path: str | Path | None = None) -> TorchvisionDetector:
    """torchvision.models.detection.<name> for `num_classes` foreground classes, random weights or the
    state dict at `weights_path` (a plain state dict, or a detect checkpoint holding one under `model`)."""
    names = torchvision_detection_names()
    if name not in names:
        raise ConfigError(f"torchvision detection model '{name}' not found; choose from {', '.join(names)}")
    builder = torchvision.models.get_model_builder(name)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    if weights_path is not None:
        model.load_state_dict(read_state_dict(weights_path, model))
    return TorchvisionDetector(model, num_classes, mean, std)


def read_state_dict(path: str | Path, model: nn.Module) -> dict:
    """The state dict in `path` for `model`, with a one-line CheckpointError when it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state dict not found")
    state = safe_torch_load(path, "state dict")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a detect checkpoint of a wrapped torchvision model
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict")
    if state and all(key.startswith("model.") for key in state):
        state = {key.removeprefix("model."): value for key, value in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or misshapen:
        first = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") \
            or f"{misshapen[0]} has shape {tuple(state[misshapen[0]].shape)}, expected {tuple(expected[misshapen[0]].shape)}"
        raise CheckpointError(f"{path}: weights do not fit {type(model).__name__} "
                              f"({len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} misshapen: {first})")
    return state
