"""Detector weights from torchvision detection state dicts and detect checkpoints: the one key mapping.

`model.pretrained` for a whole detector:
    coco   torchvision's COCO-trained detector of the same architecture (its weight enum; the file is
           taken from the torch hub cache, downloaded there when missing; offline, a one-line error
           names the file and where to put it)
    PATH   a torchvision detection state dict of the same architecture, a state dict of ours, or a
           detect checkpoint (its `model` weights and `class_names`)
(`none`, `imagenet` and a classification state dict are the trunk's business: detect/models/backbones.py.)

    weights = read_detector_weights(pretrained, backbone)   # None: not detector weights
    load_detector_weights(model, weights, class_names)

Every layer but the class-specific predictor must fit. The predictor's rows are carried over by class
name where the source's classes are known (COCO's categories, a checkpoint's class_names; VOC's names
of COCO classes count as COCO's), by position where they are not and the class counts agree, and
re-initialised otherwise; the background row comes along with any carried class.

One `DetectorMapping` per architecture: torchvision's builder name, its COCO weight enum, the key
renames between its state dict and ours, and the FrozenBatchNorm eps its builder sets after loading
the COCO file (fasterrcnn_resnet50_fpn's COCO_V1 weights were trained with eps 0: torchvision calls
`overwrite_eps(model, 0.0)`, and so do we, so that our detections with that file equal its; a model
rebuilt from a checkpoint that started from them gets the same eps, `coco_norm_eps`). torchvision's
box regression has rows for the background class (C + 1 classes), ours only for the C foreground
classes; those rows are dropped / zero-filled.
All files load with torch.load(weights_only=True).

SSDlite (`model.arch: ssdlite`, the section at the end): torchvision's `ssdlite320_mobilenet_v3_large`
and ours hold the same tensors under keys that differ only in their prefix (SSDLITE_KEY_PREFIXES),
so a state dict converts by renaming; `pretrained: PATH` takes such a file. The class count is part
of the shapes: a torchvision COCO state dict has 91 classes (background and 90 ids, some unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import CheckpointError, ConfigError
from detect.models.backbones import _read_state_dict, hub_state_dict, hub_weight_file

CLS_SCORE = "roi_heads.cls_score."
BBOX_PRED = "roi_heads.bbox_pred."
TORCHVISION_BBOX_PRED = "roi_heads.box_predictor.bbox_pred."


@dataclass(frozen=True)
class DetectorMapping:
    """How one architecture's torchvision state dict maps to ours."""

    torchvision_name: str
    coco_weights: torchvision.models.WeightsEnum | None
    renames: tuple[tuple[str, str], ...]
    """(torchvision key prefix, our key prefix); the first rule whose prefix matches renames a key."""
    coco_frozen_bn_eps: float | None = None
    """Every FrozenBatchNorm2d's eps after loading the COCO weights; None: left as built."""

    def to_ours(self, state: dict) -> dict:
        """A torchvision state dict in our layout (background box-regression rows dropped)."""
        renamed = {_rename(key, self.renames, 0): value for key, value in state.items()}
        for suffix in ("weight", "bias"):
            key = BBOX_PRED + suffix
            if key in renamed:
                renamed[key] = renamed[key][4:]
        return renamed

    def to_torchvision(self, state: dict) -> dict:
        """Our state dict in torchvision's layout (zero background box-regression rows added)."""
        result = {}
        for key, value in state.items():
            if key.startswith(BBOX_PRED):
                value = torch.cat([value.new_zeros((4, *value.shape[1:])), value])
            result[_rename(key, self.renames, 1)] = value
        return result


def _rename(key: str, renames: tuple[tuple[str, str], ...], side: int) -> str:
    for rule in renames:
        if key.startswith(rule[side]):
            return rule[1 - side] + key[len(rule[side]):]
    return key


FASTER_RCNN_FPN_RENAMES = (
    ("backbone.body.", "backbone.trunk.body."),
    ("backbone.fpn.", "backbone.trunk.fpn."),
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    ("rpn.head.conv.", "rpn.head.conv."),  # torchvision's layout before 0.13, as in the COCO_V1 file
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_heads.box_head."),
    ("roi_heads.box_predictor.cls_score.", CLS_SCORE),
    (TORCHVISION_BBOX_PRED, BBOX_PRED),
)

# model.backbone -> its torchvision twin.
MAPPINGS: dict[str, DetectorMapping] = {
    "resnet50_fpn": DetectorMapping(
        "fasterrcnn_resnet50_fpn",
        torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES,
        coco_frozen_bn_eps=0.0,
    ),
    # torchvision ships no COCO weights for it; a state dict in the same layout loads.
    "resnet101_fpn": DetectorMapping("fasterrcnn_resnet101_fpn", None, FASTER_RCNN_FPN_RENAMES),
    # One network under two names: each name picks the COCO checkpoint trained at its input size.
    "mobilenet_v3_large_fpn": DetectorMapping(
        "fasterrcnn_mobilenet_v3_large_fpn",
        torchvision.models.detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES,
    ),
    "mobilenet_v3_large_320_fpn": DetectorMapping(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        torchvision.models.detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES,
    ),
}

# VOC's names of COCO classes (after `_normalised_name`), so that VOC data keeps COCO's rows.
NAME_SYNONYMS = {"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv"}


@dataclass
class DetectorWeights:
    """A whole detector's weights in our layout, with the class names of its predictor rows."""

    state_dict: dict
    class_names: list[str] | None
    """Foreground names, row i + 1 of the classifier is class_names[i]; None: not known."""
    source: str
    """The file, for messages."""
    frozen_bn_eps: float | None = None
    """Set on every FrozenBatchNorm2d after loading (DetectorMapping.coco_frozen_bn_eps); None: kept."""


# ---------------------------------------------------------------------------------------------------
# Reading


def mapping_for(backbone: str) -> DetectorMapping | None:
    return MAPPINGS.get(backbone)


def coco_weight_file(backbone: str) -> Path:
    """Where the torch hub cache keeps the COCO checkpoint of `backbone`'s torchvision twin."""
    return hub_weight_file(_coco_enum(backbone).url)


def _coco_enum(backbone: str) -> torchvision.models.WeightsEnum:
    mapping = mapping_for(backbone)
    if mapping is None or mapping.coco_weights is None:
        have = ", ".join(name for name, m in MAPPINGS.items() if m.coco_weights is not None)
        raise ConfigError(f"model.pretrained=coco: torchvision has no COCO-trained detector for backbone "
                          f"'{backbone}' (available for: {have}); use imagenet, none or a file")
    return mapping.coco_weights


def read_detector_weights(pretrained: str, backbone: str) -> DetectorWeights | None:
    """The detector weights `pretrained` names, in our layout; None when it names none (`none`,
    `imagenet`, or a classification state dict for the trunk)."""
    if pretrained == "coco":
        weights = _coco_enum(backbone)
        state = hub_state_dict(weights.url, "model.pretrained=coco",
                               f"the COCO weights of torchvision's {mapping_for(backbone).torchvision_name}")
        names = list(weights.meta["categories"])[1:]  # row 0 is background; "N/A" rows match nothing
        mapping = mapping_for(backbone)
        return DetectorWeights(mapping.to_ours(state), names, str(hub_weight_file(weights.url)),
                               mapping.coco_frozen_bn_eps)
    if pretrained in ("none", "imagenet"):
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained: '{pretrained}' is not a file (use none, imagenet, coco, or a "
                          f"path to a torchvision state dict or a detect checkpoint)")
    loaded = read_weights_file(path)
    if _is_checkpoint(loaded):
        return DetectorWeights(dict(loaded["model"]), [str(n) for n in loaded["class_names"]], str(path))
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    if any(key.startswith("roi_heads.box_predictor.") for key in loaded):
        mapping = mapping_for(backbone)
        if mapping is None:
            raise CheckpointError(f"{path}: a torchvision detector's state dict, but backbone '{backbone}' has "
                                  f"no torchvision twin (those with one: {', '.join(MAPPINGS)})")
        return DetectorWeights(mapping.to_ours(loaded), None, str(path))
    if CLS_SCORE + "weight" in loaded:
        return DetectorWeights(dict(loaded), None, str(path))
    return None  # a classification state dict: the trunk loads it


def _is_checkpoint(loaded) -> bool:
    return isinstance(loaded, dict) and isinstance(loaded.get("model"), dict) and "class_names" in loaded


def read_weights_file(path: Path):
    """torch.load(weights_only=True) of a file, with a one-line CheckpointError if it cannot be read.

    numpy arrays are allowed (a detect checkpoint keeps numpy's RNG state); no other code runs."""
    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    allowed = [numpy_core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot read weights: {first_line}") from None


# ---------------------------------------------------------------------------------------------------
# Loading


def load_detector_weights(model: nn.Module, weights: DetectorWeights, class_names: Sequence[str] | None) -> None:
    """Load `weights` into `model` (ours, same architecture); the predictor rows as in the module
    docstring. `class_names`: the model's foreground classes (None: unknown, rows carried by position)."""
    expected = model.state_dict()
    # BatchNorm's step counters: FrozenBatchNorm2d has none, and a file from one may lack them.
    state = {key: value for key, value in weights.state_dict.items()
             if key in expected or not key.endswith("num_batches_tracked")}
    state.update({key: value for key, value in expected.items()
                  if key.endswith("num_batches_tracked") and key not in state})
    state.update(carried_predictor(expected, state, weights.class_names, class_names))
    _check_fits(expected, state, weights.source)
    model.load_state_dict(state)
    if weights.frozen_bn_eps is not None:
        overwrite_frozen_bn_eps(model, weights.frozen_bn_eps)


def overwrite_frozen_bn_eps(model: nn.Module, eps: float, also_batchnorm: bool = False) -> None:
    """Set the eps of every FrozenBatchNorm2d in `model` (torchvision's `overwrite_eps`), and of every
    BatchNorm2d too with `also_batchnorm` (a model rebuilt from a checkpoint has those in their place)."""
    kinds = (FrozenBatchNorm2d, nn.BatchNorm2d) if also_batchnorm else FrozenBatchNorm2d
    for module in model.modules():
        if isinstance(module, kinds):
            module.eps = eps


def coco_norm_eps(pretrained: str, backbone: str) -> float | None:
    """The eps the norms of a detector built with `pretrained` and `backbone` took from the COCO
    weights it loaded (DetectorMapping.coco_frozen_bn_eps); None: as built."""
    mapping = mapping_for(backbone)
    return mapping.coco_frozen_bn_eps if pretrained == "coco" and mapping is not None else None


def carried_predictor(expected: dict, state: dict, source_names: list[str] | None,
                      target_names: Sequence[str] | None) -> dict:
    """The model's predictor tensors (`expected`, freshly initialised) with the source's rows copied in
    where a target class has a source row (see the module docstring)."""
    source_rows = state.get(CLS_SCORE + "weight")
    if source_rows is None:
        return {}
    rows = _row_pairs(source_rows.shape[0] - 1, expected[CLS_SCORE + "weight"].shape[0] - 1,
                      source_names, target_names)
    result = {key: expected[key].clone() for key in expected if key.startswith((CLS_SCORE, BBOX_PRED))}
    if rows:
        rows = [(0, 0), *rows]  # background
        target, source = (torch.tensor(index) for index in zip(*rows))
        for suffix in ("weight", "bias"):
            result[CLS_SCORE + suffix][target] = state[CLS_SCORE + suffix][source].to(result[CLS_SCORE + suffix].dtype)
            box_target = _box_rows(target[1:] - 1)
            box_source = _box_rows(source[1:] - 1)
            result[BBOX_PRED + suffix][box_target] = state[BBOX_PRED + suffix][box_source].to(
                result[BBOX_PRED + suffix].dtype)
    return result


def _box_rows(classes: torch.Tensor) -> torch.Tensor:
    """Rows of a class-specific box regression [C * 4, ...] for 0-based foreground classes."""
    return (classes[:, None] * 4 + torch.arange(4)).reshape(-1)


def _row_pairs(source_count: int, target_count: int, source_names: list[str] | None,
               target_names: Sequence[str] | None) -> list[tuple[int, int]]:
    """(target label, source label) pairs, labels 1-based."""
    if source_names is None or target_names is None:
        same = source_count == target_count and (source_names is None or len(source_names) == source_count)
        return [(label, label) for label in range(1, target_count + 1)] if same else []
    source_index = {}
    for label, name in enumerate(source_names[:source_count], start=1):
        source_index.setdefault(_normalised_name(name), label)
    pairs = []
    for label, name in enumerate(target_names, start=1):
        found = source_index.get(_normalised_name(name))
        if found is not None:
            pairs.append((label, found))
    return pairs


def _normalised_name(name: str) -> str:
    plain = "".join(ch for ch in name.lower() if ch.isalnum())
    return NAME_SYNONYMS.get(plain, plain)


def _check_fits(expected: dict, state: dict, source: str) -> None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshapen = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or misshapen:
        first = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") or (
            f"{misshapen[0]} has shape {tuple(state[misshapen[0]].shape)}, "
            f"expected {tuple(expected[misshapen[0]].shape)}")
        raise CheckpointError(f"{source}: weights do not fit this model.backbone ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(misshapen)} misshapen: {first})")


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


def _rename_prefixes(state_dict: dict, pairs: list[tuple[str, str]], source: str) -> dict:
    """`_rename` (from the first prefix of each pair to the second) for every key, where every key
    must match one of the prefixes."""
    renamed = {}
    for key, value in state_dict.items():
        if not any(key.startswith(old) for old, _ in pairs):
            raise CheckpointError(f"{source}: unexpected key '{key}' for an SSDlite state dict")
        renamed[_rename(key, tuple(pairs), 0)] = value
    return renamed


def ssdlite_from_torchvision(state_dict: dict, source: str = "state dict") -> dict:
    """torchvision SSDlite keys -> ours (tensors shared, not copied)."""
    return _rename_prefixes(state_dict, list(SSDLITE_KEY_PREFIXES), source)


def ssdlite_to_torchvision(state_dict: dict, source: str = "state dict") -> dict:
    """Our SSDlite keys -> torchvision's (tensors shared, not copied)."""
    return _rename_prefixes(state_dict, [(ours, theirs) for theirs, ours in SSDLITE_KEY_PREFIXES], source)


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
