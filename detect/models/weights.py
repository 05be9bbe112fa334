"""torchvision detection state dicts and ours: the key mappings, one table per architecture.

SSDlite: torchvision's `ssdlite320_mobilenet_v3_large` (SSD with SSDLiteHead on
SSDLiteFeatureExtractorMobileNet) and ours (`model.arch: ssdlite`, a MobileNetV3 trunk) hold the same
tensors under keys that differ only in their prefix (SSDLITE_KEY_PREFIXES); the tensors' layouts are
the same, so a state dict converts by renaming. The class count is part of the shapes: a torchvision
COCO state dict has 91 classes (background and 90 ids, some unused), so it loads into a model of 90
foreground classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from detect.errors import CheckpointError
from detect.models.backbones import _read_state_dict

# ---------------------------------------------------------------------------------------------------
# SSDlite

# (torchvision prefix, our prefix); every key of either model starts with exactly one of them.
SSDLITE_KEY_PREFIXES = (
    ("backbone.features.", "trunk.features."),
    ("backbone.extra.", "trunk.extra."),
    ("head.classification_head.module_list.", "head.cls_convs."),
    ("head.regression_head.module_list.", "head.box_convs."),
)
# Channels of MobileNetV3's last layer with the full tail; the reduced tail has half.
MOBILENET_V3_FULL_TAIL = {"mobilenet_v3_large": 960, "mobilenet_v3_small": 576}


def _rename(state_dict: dict, pairs: list[tuple[str, str]], source: str) -> dict:
    renamed = {}
    for key, value in state_dict.items():
        match = next(((old, new) for old, new in pairs if key.startswith(old)), None)
        if match is None:
            raise CheckpointError(f"{source}: unexpected key '{key}' for an SSDlite state dict")
        renamed[match[1] + key[len(match[0]):]] = value
    return renamed


def ssdlite_from_torchvision(state_dict: dict, source: str = "state dict") -> dict:
    """torchvision SSDlite keys -> ours (tensors shared, not copied)."""
    return _rename(state_dict, list(SSDLITE_KEY_PREFIXES), source)


def ssdlite_to_torchvision(state_dict: dict, source: str = "state dict") -> dict:
    """Our SSDlite keys -> torchvision's (tensors shared, not copied)."""
    return _rename(state_dict, [(ours, theirs) for theirs, ours in SSDLITE_KEY_PREFIXES], source)


def is_torchvision_ssdlite(state_dict: dict) -> bool:
    """Whether a state dict is a torchvision SSDlite detector's (rather than a classifier's)."""
    return any(key.startswith("head.classification_head.module_list.") for key in state_dict) and any(
        key.startswith("backbone.extra.") for key in state_dict
    )


def ssdlite_has_reduced_tail(state_dict: dict, backbone: str) -> bool:
    """Whether a torchvision SSDlite state dict was made with MobileNetV3's reduced tail (its first
    extra layer takes the last layer's channels: half the full tail's)."""
    first_extra = state_dict["backbone.extra.0.0.0.weight"]
    return first_extra.shape[1] != MOBILENET_V3_FULL_TAIL[backbone]


def torchvision_ssdlite_state_dict(pretrained: str) -> dict | None:
    """The torchvision SSDlite state dict in the file `pretrained`, or None when `pretrained` is a word
    (none, imagenet) or a file holding something else (a classifier's weights, for the trunk)."""
    if pretrained in ("none", "imagenet"):
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        return None  # the trunk's loader reports the missing file
    state_dict = _read_state_dict(path)
    return state_dict if is_torchvision_ssdlite(state_dict) else None


def load_torchvision_ssdlite(model: nn.Module, state_dict: dict, source: str) -> nn.Module:
    """Load a torchvision SSDlite state dict into our SSDlite `model`; one-line CheckpointError when it
    does not fit (another class count, trunk or number of maps)."""
    ours = ssdlite_from_torchvision(state_dict, source)
    misfit = describe_misfit(ours, model.state_dict())
    if misfit is not None:
        raise CheckpointError(f"{source}: torchvision SSDlite weights do not fit this model ({misfit})")
    with torch.no_grad():
        model.load_state_dict(ours)
    return model


def describe_misfit(state_dict: dict, expected: dict) -> str | None:
    """None when `state_dict` has exactly the keys and shapes of `expected`, else one line: the counts
    of missing, unexpected and misshapen keys and the first of them."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = [key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape]
    if not (missing or unexpected or misshapen):
        return None
    first = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") or (
        f"{misshapen[0]} has shape {tuple(state_dict[misshapen[0]].shape)}, "
        f"expected {tuple(expected[misshapen[0]].shape)}")
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} misshapen: {first}"
