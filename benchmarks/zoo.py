"""torchvision's own detection models by builder name (`fasterrcnn_resnet50_fpn`,
`retinanet_resnet50_fpn`, `ssd300_vgg16`, ...) for the benchmark table's `--torchvision NAME[=PATH]`.

Weights: random unless a local state dict is given; the ImageNet backbone weights are never fetched
(`weights_backbone=None`). The class count is ours plus background, so a state dict must come from a
model trained on this data's classes (labels 1..C, 0 background). Pick a config whose input size suits
the model (e.g. 300 fixed for `ssd300_vgg16`): it sees our resized pixels (benchmarks.torchvision_adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torchvision
from torch import nn

from benchmarks.torchvision_adapter import TorchvisionAdapter
from detect.errors import CheckpointError, ConfigError
from detect.models.weights import describe_misfit
from detect.safe_load import safe_torch_load


def torchvision_detection_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def build_named_detector(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
                         weights_path: str | Path | None = None) -> TorchvisionAdapter:
    """torchvision.models.detection.<name> for `num_classes` foreground classes, behind our contract,
    taking batches normalized with `mean` / `std`; random weights or the state dict at `weights_path`
    (a plain state dict, or a detect checkpoint holding one under `model`)."""
    names = torchvision_detection_names()
    if name not in names:
        raise ConfigError(f"torchvision detection model '{name}' not found; choose from {', '.join(names)}")
    builder = torchvision.models.get_model_builder(name)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    if weights_path is not None:
        model.load_state_dict(read_state_dict(weights_path, model))
    return TorchvisionAdapter(model, num_classes, mean, std)


def read_state_dict(path: str | Path, model: nn.Module) -> dict:
    """The state dict in `path` for `model`, with a one-line CheckpointError when it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state dict not found")
    state = safe_torch_load(path, "state dict")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a detect checkpoint of an adapted torchvision model
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict")
    if state and all(key.startswith("model.") for key in state):
        state = {key.removeprefix("model."): value for key, value in state.items()}
    misfit = describe_misfit(state, model.state_dict())
    if misfit is not None:
        raise CheckpointError(f"{path}: weights do not fit {type(model).__name__} ({misfit})")
    return state
