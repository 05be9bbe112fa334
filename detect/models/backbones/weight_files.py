"""Weight files for backbones and detectors: torchvision's ImageNet weights, the torch hub cache, and
state dicts read from a path, all read as data only (detect.safe_load).

`model.pretrained` for a trunk: "none" (random init), "imagenet" (torchvision's weight enum; the file is
taken from the torch hub cache, downloaded there when missing), the path of a torchvision classification
state dict, or DETECTOR_WEIGHTS: built as for trained weights (frozen BatchNorm, default trainable stages)
but left random, because the whole detector's weights are loaded over it (detect/models/weights.py).
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import CheckpointError, ConfigError
from detect.safe_load import safe_torch_load

# The ImageNet weights used for `pretrained: imagenet`: torchvision's V1 enums, as in its detectors.
IMAGENET_WEIGHTS = {
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "vgg16_bn": torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
    "mobilenet_v3_large": torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    "mobilenet_v3_small": torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
}

# `pretrained` value for a trunk whose weights come with the detector's (a COCO checkpoint, a file).
DETECTOR_WEIGHTS = "detector"


def hub_weight_file(url: str) -> Path:
    """Where torch hub caches the weights at `url`: <hub dir>/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def imagenet_weight_file(name: str) -> Path:
    """Where torchvision caches the ImageNet weights of backbone `name`: <hub dir>/checkpoints/<file>."""
    return hub_weight_file(IMAGENET_WEIGHTS[name].url)


def hub_state_dict(url: str, setting: str, what: str) -> dict:
    """The state dict at `url` from the torch hub cache, downloaded only when it is not cached there.

    Offline, a one-line ConfigError names `setting`, `what` was missing, and the file to put in place.
    """
    cached = hub_weight_file(url)
    if not cached.is_file():
        # torch hub's download (to a temporary file renamed into place, checked against the hash in
        # the file name, as torchvision does), then read like any cached file: a downloaded file that
        # would run code is refused in one line as a local one is.
        match = torch.hub.HASH_REGEX.search(cached.name)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), hash_prefix=match.group(1) if match else None)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            reason = str(getattr(error, "reason", error)).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"{setting}: {what} are not cached and could not be downloaded ({reason}); download {url} "
                f"to {cached}, or set model.pretrained to the path of a local torchvision state dict"
            ) from None
    return _read_state_dict(cached)


def _imagenet_state_dict(name: str) -> dict:
    """The cached ImageNet state dict of `name`, downloading it only when it is not cached."""
    return hub_state_dict(IMAGENET_WEIGHTS[name].url, "model.pretrained=imagenet", f"ImageNet weights for '{name}'")


def _read_state_dict(path: Path) -> dict:
    """A state dict from a file; a checkpoint dict holding it under `model`/`state_dict` works too."""
    loaded = safe_torch_load(path, "state dict")
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    return loaded


def load_classifier_weights(model: nn.Module, name: str, pretrained: str) -> nn.Module:
    """Load torchvision classifier weights for backbone `name` into `model` (a torchvision classifier).

    `pretrained`: "none" (leave as is), "imagenet", or a path to a state dict. Returns `model`.
    """
    if pretrained in ("none", DETECTOR_WEIGHTS):
        return model
    if pretrained == "imagenet":
        state_dict, source = _imagenet_state_dict(name), str(imagenet_weight_file(name))
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"model.pretrained: '{pretrained}' is not a file (use none, imagenet, or a path to a "
                f"torchvision {name} state dict)"
            )
        state_dict, source = _read_state_dict(path), str(path)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first_line = " ".join(str(error).split("\n\t")[:2]).splitlines()[0]
        raise CheckpointError(f"{source}: not a torchvision {name} state dict: {first_line}") from None
    return model


def uses_frozen_batchnorm(pretrained: str) -> bool:
    """Backbones freeze BatchNorm when they start from trained weights (imagenet or a file)."""
    return pretrained != "none"


def classifier_model(name: str, pretrained: str = "none", **constructor_args) -> nn.Module:
    """torchvision's classifier `name` with its weights loaded (`constructor_args` go to its builder).

    BatchNorm: with loaded weights, ResNets get FrozenBatchNorm2d (ImageNet statistics; detection
    batches are too small to re-estimate them). From random weights there are no statistics to keep,
    and a frozen identity norm leaves a deep ResNet unnormalized, so ordinary BatchNorm2d trains.
    """
    if name not in IMAGENET_WEIGHTS:
        known = ", ".join(IMAGENET_WEIGHTS)
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (those with ImageNet weights: {known})")
    constructor = getattr(torchvision.models, name)
    if name.startswith("resnet") and uses_frozen_batchnorm(pretrained):
        model = constructor(weights=None, norm_layer=FrozenBatchNorm2d, **constructor_args)
    else:
        model = constructor(weights=None, **constructor_args)
    return load_classifier_weights(model, name, pretrained)

