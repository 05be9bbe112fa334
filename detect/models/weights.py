"""Detector weights from torchvision detection state dicts and detect checkpoints: the one key mapping.

`model.pretrained` for a whole detector:
    coco   torchvision's COCO-trained detector of the same architecture (its weight enum; the file is
           taken from the torch hub cache, downloaded there when missing; offline, a one-line error
           names the file and where to put it)
    PATH   a torchvision detection state dict of the same architecture, a state dict of ours, or a
           detect checkpoint (its `model` weights and `class_names`); torchvision's COCO file under its
           published name (e.g. ssdlite320_mobilenet_v3_large_coco-a79551df.pth) reads as `coco` does
(`none`, `imagenet` and a classification state dict are the trunk's business:
detect/models/backbones/weight_files.py.)

    weights = read_detector_weights(pretrained, arch, backbone)   # None: not detector weights
    load_detector_weights(model, weights, class_names)

Every layer but the class-specific ones must fit. Their rows are carried over by class name where the
source's classes are known (COCO's categories, a checkpoint's class_names; VOC's names of COCO
classes count as COCO's), by position where they are not and the class counts agree, and
re-initialised otherwise; the background row comes along with any carried class. Each detector family
declares where it keeps a class's rows (its `class_rows`, detect/models/detection_model.py): Faster
R-CNN's predictor has one block of C + 1 classifier rows (and 4 box rows per foreground class); an SSD
head's classification convolution on each map has one block of C + 1 rows per default box of a
location, [A * (C + 1)], and rows are carried in every block. SSD's box regression is class-agnostic and loads as it is.

One `DetectorMapping` per (model.arch, model.backbone) with a torchvision twin: torchvision's builder
name, its COCO weight enum, and the key renames between its state dict and ours. torchvision's Faster
R-CNN box regression has rows for the background class (C + 1 classes), ours only for the C foreground
classes; those rows are dropped / zero-filled. torchvision's SSD300 VGG16 and SSDlite320
MobileNetV3-Large hold the same tensors as ours under other names. A COCO state dict has 91 classes
(background and 90 ids, some unused: "N/A"). All files load through detect.safe_load (weights_only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    SSD300_VGG16_Weights,
    SSDLite320_MobileNet_V3_Large_Weights,
)
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import CheckpointError, ConfigError
from detect.models.backbones.weight_files import hub_state_dict, hub_weight_file
from detect.models.class_rows import ClassRows
from detect.models.registry import DETECTORS
from detect.safe_load import safe_torch_load

CLS_SCORE = "roi_heads.cls_score."
BBOX_PRED = "roi_heads.bbox_pred."


@dataclass(frozen=True)
class DetectorMapping:
    """How one architecture's torchvision state dict maps to ours."""

    torchvision_name: str
    coco_weights: torchvision.models.WeightsEnum | None
    renames: tuple[tuple[str, str], ...]
    """(torchvision key prefix, our key prefix); the first rule whose prefix matches renames a key."""
    background_box_rows: str | None = None
    """Our key prefix of a box regression whose torchvision twin has 4 more rows first, for the
    background class (Faster R-CNN's)."""
    coco_frozen_bn_eps: float | None = None
    """Every FrozenBatchNorm2d's eps after loading the COCO weights (fasterrcnn_resnet50_fpn's COCO_V1
    weights were trained with eps 0: torchvision's builder calls `overwrite_eps(model, 0.0)`, and so do
    we, so that our detections with that file equal its); None: left as built."""
    coco_input: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """torchvision's builder's (image_mean, image_std) for this twin: the input scaling its COCO weights
    were trained with."""
    coco_config: str | None = None
    """A built-in config whose input (and default boxes) fit the COCO weights, for messages."""

    def to_ours(self, state: dict) -> dict:
        """A torchvision state dict in our layout (tensors shared; background box rows dropped)."""
        renamed = {_rename(key, self.renames, 0): value for key, value in state.items()}
        for key in self._background_box_keys(renamed):
            renamed[key] = renamed[key][4:]
        return renamed

    def to_torchvision(self, state: dict) -> dict:
        """Our state dict in torchvision's layout (tensors shared; zero background box rows added)."""
        state = dict(state)
        for key in self._background_box_keys(state):
            state[key] = torch.cat([state[key].new_zeros((4, *state[key].shape[1:])), state[key]])
        return {_rename(key, self.renames, 1): value for key, value in state.items()}

    def _background_box_keys(self, state: dict) -> list[str]:
        if self.background_box_rows is None:
            return []
        return [self.background_box_rows + suffix for suffix in ("weight", "bias")
                if self.background_box_rows + suffix in state]


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
    ("roi_heads.box_predictor.bbox_pred.", BBOX_PRED),
)

SSD_HEAD_RENAMES = (
    ("head.classification_head.module_list.", "head.cls_convs."),
    ("head.regression_head.module_list.", "head.box_convs."),
)

# torchvision's SSDFeatureExtractorVGG -> our VGGTrunk (backbones/vgg.py). torchvision's `extra.0`
# is conv5_1 .. conv5_3 (the max pool after conv4_3 first) followed by a Sequential of pool5, fc6,
# ReLU, fc7, ReLU at index 7; ours lays those out flat in `fc7`: fc6 at 8, fc7 at 10.
SSD300_VGG16_RENAMES = (
    ("backbone.features.", "trunk.conv4_3."),
    ("backbone.scale_weight", "trunk.l2norm.weight"),
    ("backbone.extra.0.7.1.", "trunk.fc7.8."),
    ("backbone.extra.0.7.3.", "trunk.fc7.10."),
    ("backbone.extra.0.", "trunk.fc7."),
    *((f"backbone.extra.{index + 1}.", f"trunk.extras.{index}.") for index in range(4)),
    *SSD_HEAD_RENAMES,
)

# torchvision's SSDLiteFeatureExtractorMobileNet and SSDLiteHead keep our module names (ssdlite.py).
SSDLITE_RENAMES = (
    ("backbone.features.", "trunk.features."),
    ("backbone.extra.", "trunk.extra."),
    *SSD_HEAD_RENAMES,
)

# torchvision's detectors' input scaling (their builders' image_mean / image_std).
IMAGENET_SCALING = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # Faster R-CNN's GeneralizedRCNNTransform
SSD300_SCALING = ((0.48235, 0.45882, 0.40784), (1.0 / 255.0,) * 3)  # ssd300_vgg16: 0-255 pixels, mean removed
SSDLITE_SCALING = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # ssdlite320_mobilenet_v3_large: [-1, 1]

MAPPINGS: dict[tuple[str, str], DetectorMapping] = {
    ("faster_rcnn", "resnet50_fpn"): DetectorMapping(
        "fasterrcnn_resnet50_fpn", FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES, BBOX_PRED, coco_frozen_bn_eps=0.0, coco_input=IMAGENET_SCALING,
        coco_config="voc_faster_rcnn_fpn"),
    # torchvision ships no COCO weights for it; a state dict in the same layout loads.
    ("faster_rcnn", "resnet101_fpn"): DetectorMapping(
        "fasterrcnn_resnet101_fpn", None, FASTER_RCNN_FPN_RENAMES, BBOX_PRED),
    # One network under two names: each name picks the COCO checkpoint trained at its input size.
    ("faster_rcnn", "mobilenet_v3_large_fpn"): DetectorMapping(
        "fasterrcnn_mobilenet_v3_large_fpn", FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES, BBOX_PRED, coco_input=IMAGENET_SCALING, coco_config="voc_faster_rcnn_mobilenet"),
    ("faster_rcnn", "mobilenet_v3_large_320_fpn"): DetectorMapping(
        "fasterrcnn_mobilenet_v3_large_320_fpn", FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        FASTER_RCNN_FPN_RENAMES, BBOX_PRED, coco_input=IMAGENET_SCALING, coco_config="voc_faster_rcnn_mobilenet320"),
    # With 6 maps (SSD300); its default boxes and input scaling are configs/voc_ssd300_coco.yaml's.
    ("ssd", "vgg16"): DetectorMapping(
        "ssd300_vgg16", SSD300_VGG16_Weights.COCO_V1, SSD300_VGG16_RENAMES, coco_input=SSD300_SCALING,
        coco_config="voc_ssd300_coco"),
    ("ssdlite", "mobilenet_v3_large"): DetectorMapping(
        "ssdlite320_mobilenet_v3_large", SSDLite320_MobileNet_V3_Large_Weights.COCO_V1, SSDLITE_RENAMES,
        coco_input=SSDLITE_SCALING, coco_config="voc_ssdlite320"),
    # torchvision's SSDlite classes on its mobilenet_v3_small: no builder, no COCO weights; a file loads.
    ("ssdlite", "mobilenet_v3_small"): DetectorMapping("SSDlite on mobilenet_v3_small", None, SSDLITE_RENAMES),
}

# Key prefixes only torchvision's detectors have: a state dict with one is a detector's, not a trunk's.
TORCHVISION_DETECTOR_KEYS = ("roi_heads.box_predictor.", "head.classification_head.")

# VOC's names of COCO classes (after `_normalized_name`), so that VOC data keeps COCO's rows.
NAME_SYNONYMS = {"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv"}


@dataclass
class DetectorWeights:
    """A whole detector's weights in our layout, with the class names of its class-specific rows."""

    state_dict: dict
    class_names: list[str] | None
    """Foreground names, class i + 1 is class_names[i]; None: not known."""
    source: str
    """The file, for messages."""
    frozen_bn_eps: float | None = None
    """Set on every FrozenBatchNorm2d after loading (DetectorMapping.coco_frozen_bn_eps); None: kept."""


# ---------------------------------------------------------------------------------------------------
# Reading


def mapping_for(arch: str, backbone: str) -> DetectorMapping | None:
    return MAPPINGS.get((arch, backbone))


def coco_input_mismatch(pretrained: str, arch: str, backbone: str, mean, std) -> str | None:
    """With `pretrained: coco`, a warning when the input scaling (input.mean / input.std) is not the
    one the COCO weights were trained with: the model would start from features of inputs it never
    saw. None when they agree, or for any other `pretrained`."""
    mapping = mapping_for(arch, backbone)
    if pretrained != "coco" or mapping is None or mapping.coco_input is None:
        return None
    want_mean, want_std = mapping.coco_input
    if all(abs(a - b) <= 1e-4 * max(abs(b), 1.0) for a, b in zip((*mean, *std), (*want_mean, *want_std))):
        return None
    return (f"model.pretrained=coco: torchvision's {mapping.torchvision_name} COCO weights were trained with "
            f"input.mean {_fmt(want_mean)} and input.std {_fmt(want_std)}, this config has {_fmt(mean)} and "
            f"{_fmt(std)}; config {mapping.coco_config} has the matching settings")


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.5g}" for v in values) + "]"


def _coco_enum(arch: str, backbone: str) -> torchvision.models.WeightsEnum:
    mapping = mapping_for(arch, backbone)
    if mapping is None or mapping.coco_weights is None:
        have = ", ".join(f"{a} {b}" for (a, b), m in MAPPINGS.items() if m.coco_weights is not None)
        raise ConfigError(f"model.pretrained=coco: torchvision has no COCO-trained detector for backbone "
                          f"'{backbone}' with model.arch {arch} (available for: {have}); use imagenet, none "
                          f"or a file")
    return mapping.coco_weights


def read_detector_weights(pretrained: str, arch: str, backbone: str) -> DetectorWeights | None:
    """The detector weights `pretrained` names, in our layout; None when it names none (`none`,
    `imagenet`, or a classification state dict for the trunk)."""
    if pretrained == "coco":
        return _coco_detector_weights(arch, backbone)
    if pretrained in ("none", "imagenet"):
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained: '{pretrained}' is not a file (use none, imagenet, coco, or a "
                          f"path to a torchvision state dict or a detect checkpoint)")
    loaded = safe_torch_load(path, "weights file")
    if _is_checkpoint(loaded):
        return DetectorWeights(dict(loaded["model"]), [str(n) for n in loaded["class_names"]], str(path))
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]  # a training checkpoint of torchvision's reference scripts
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    if any(key.startswith(TORCHVISION_DETECTOR_KEYS) for key in loaded):
        mapping = mapping_for(arch, backbone)
        if mapping is None:
            have = ", ".join(f"{a} {b}" for a, b in MAPPINGS)
            raise CheckpointError(f"{path}: a torchvision detector's state dict, but backbone '{backbone}' with "
                                  f"model.arch {arch} has no torchvision twin (those with one: {have})")
        if is_published_coco_file(path, mapping):  # torchvision's own file: its rows are COCO's categories
            return DetectorWeights(mapping.to_ours(loaded), list(mapping.coco_weights.meta["categories"])[1:],
                                   str(path), mapping.coco_frozen_bn_eps)
        return DetectorWeights(mapping.to_ours(loaded), None, str(path))
    if any(rows.keys(loaded) for family in DETECTORS.values() for rows in family.class_rows):
        return DetectorWeights(dict(loaded), None, str(path))  # ours
    return None  # a classification state dict: the trunk loads it


def is_published_coco_file(path: Path, mapping: DetectorMapping) -> bool:
    """Whether `path` is torchvision's COCO weight file of `mapping`'s twin, by its published name (which
    carries the start of the file's SHA-256): such a file, copied from a hub cache on a networked machine,
    is read as `pretrained: coco` is, with COCO's category names and the twin's norm eps."""
    return mapping.coco_weights is not None and path.name == Path(mapping.coco_weights.url).name


def _coco_detector_weights(arch: str, backbone: str) -> DetectorWeights:
    weights = _coco_enum(arch, backbone)
    mapping = mapping_for(arch, backbone)
    state = hub_state_dict(
        weights.url, "model.pretrained=coco", f"the COCO weights of torchvision's {mapping.torchvision_name}")
    names = list(weights.meta["categories"])[1:]  # row 0 is background; "N/A" rows match nothing
    return DetectorWeights(mapping.to_ours(state), names, str(hub_weight_file(weights.url)),
                           mapping.coco_frozen_bn_eps)


def _is_checkpoint(loaded) -> bool:
    return isinstance(loaded, dict) and isinstance(loaded.get("model"), dict) and "class_names" in loaded


# ---------------------------------------------------------------------------------------------------
# Loading


def load_detector_weights(model: nn.Module, weights: DetectorWeights, class_names: Sequence[str] | None) -> None:
    """Load `weights` into `model` (a DetectionModel of the same architecture); its `class_rows` as in
    the module docstring. `class_names`: the model's foreground classes (None: unknown, rows carried by
    position)."""
    expected = model.state_dict()
    # BatchNorm's step counters: FrozenBatchNorm2d has none, and a file from one may lack them.
    state = {key: value for key, value in weights.state_dict.items()
             if key in expected or not key.endswith("num_batches_tracked")}
    state.update({key: value for key, value in expected.items()
                  if key.endswith("num_batches_tracked") and key not in state})
    state.update(carried_class_rows(expected, state, model.num_classes, weights.class_names, class_names,
                                    model.class_rows))
    misfit = describe_misfit(state, expected)
    if misfit is not None:
        raise CheckpointError(f"{weights.source}: weights do not fit this model.arch and model.backbone ({misfit})")
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


def coco_norm_eps(pretrained: str, arch: str, backbone: str) -> float | None:
    """The eps the norms of a detector built with `pretrained` took from the COCO weights it loaded
    (DetectorMapping.coco_frozen_bn_eps); None: as built."""
    mapping = mapping_for(arch, backbone)
    return mapping.coco_frozen_bn_eps if pretrained == "coco" and mapping is not None else None


def carried_class_rows(expected: dict, state: dict, target_count: int, source_names: list[str] | None,
                       target_names: Sequence[str] | None, layers: tuple[ClassRows, ...]) -> dict:
    """The model's class-specific tensors (`expected`, freshly initialised, for `target_count`
    foreground classes) with the source's rows (`state`) copied in where a target class has a source
    row (see the module docstring); {} when the source's layers are not of the model's shape (the
    caller reports them as misshapen)."""
    source_count = _source_class_count(expected, state, target_count, layers)
    if source_count is None:
        return {}
    result = {key: expected[key].clone() for rows in layers for key in rows.keys(expected)}
    pairs = _row_pairs(source_count, target_count, source_names, target_names)
    if not pairs:
        return result
    target_labels, source_labels = (torch.tensor(labels) for labels in zip((0, 0), *pairs))  # with background
    for rows in layers:
        keep = slice(None) if rows.background else slice(1, None)
        for key in rows.keys(expected):
            blocks = _blocks(expected[key], rows, target_count)
            target = rows.rows(target_labels[keep], target_count, blocks)
            source = rows.rows(source_labels[keep], source_count, blocks)
            result[key][target] = state[key][source].to(result[key].dtype)
    return result


def _blocks(tensor: torch.Tensor, rows: ClassRows, num_classes: int) -> int:
    """How many blocks of class rows `tensor` (a layer for `num_classes` foreground classes) has."""
    return tensor.shape[0] // (rows.classes(num_classes) * rows.per_class)


def _source_class_count(expected: dict, state: dict, target_count: int, layers: tuple[ClassRows, ...]) -> int | None:
    """The source's foreground class count, read off its first class-specific layer; None when a layer
    is missing from the source or its rows do not come in the model's blocks."""
    first = layers[0]
    key = first.keys(expected)[0]
    if key not in state:
        return None
    per_block = state[key].shape[0] / (_blocks(expected[key], first, target_count) * first.per_class)
    source_count = int(per_block) - int(first.background)
    for rows in layers:
        for key in rows.keys(expected):
            blocks = _blocks(expected[key], rows, target_count)
            shape = (blocks * rows.per_class * rows.classes(source_count), *expected[key].shape[1:])
            if key not in state or tuple(state[key].shape) != shape:
                return None
    return source_count if per_block.is_integer() and source_count >= 0 else None


def _row_pairs(source_count: int, target_count: int, source_names: list[str] | None,
               target_names: Sequence[str] | None) -> list[tuple[int, int]]:
    """(target label, source label) pairs, labels 1-based."""
    if source_names is None or target_names is None:
        same = source_count == target_count and (source_names is None or len(source_names) == source_count)
        return [(label, label) for label in range(1, target_count + 1)] if same else []
    source_index = {}
    for label, name in enumerate(source_names[:source_count], start=1):
        source_index.setdefault(_normalized_name(name), label)
    pairs = []
    for label, name in enumerate(target_names, start=1):
        found = source_index.get(_normalized_name(name))
        if found is not None:
            pairs.append((label, found))
    return pairs


def _normalized_name(name: str) -> str:
    plain = "".join(ch for ch in name.lower() if ch.isalnum())
    return NAME_SYNONYMS.get(plain, plain)


def describe_misfit(state_dict: dict, expected: dict) -> str | None:
    """None when `state_dict` has exactly the keys and shapes of `expected`, else one line: the counts
    of missing, unexpected and misshapen keys and the first of them."""
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshapen = [key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape]
    if not (missing or unexpected or misshapen):
        return None
    first = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") or (
        f"{misshapen[0]} has shape {tuple(state_dict[misshapen[0]].shape)}, "
        f"expected {tuple(expected[misshapen[0]].shape)}")
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} misshapen: {first}"


# ---------------------------------------------------------------------------------------------------
# SSDlite's MobileNetV3 tail

# Channels of MobileNetV3's last layer with the full tail; the reduced tail has half.
MOBILENET_V3_FULL_TAIL = {"mobilenet_v3_large": 960, "mobilenet_v3_small": 576}


def ssdlite_has_reduced_tail(state_dict: dict, backbone: str) -> bool:
    """Whether SSDlite weights in our layout were made with MobileNetV3's reduced tail (its first extra
    layer takes the last layer's channels: half the full tail's). torchvision's COCO SSDlite has it."""
    first_extra = state_dict.get("trunk.extra.0.0.0.weight")
    return first_extra is not None and first_extra.shape[1] != MOBILENET_V3_FULL_TAIL[backbone]


def starting_weight_file(model_cfg) -> Path | None:
    """The torch hub cache file that `model.pretrained` imagenet or coco reads (present or not), or None
    when it names none of torchvision's files (none, a path, a trunk without ImageNet weights here)."""
    from detect.models.backbones.weight_files import IMAGENET_WEIGHTS, hub_weight_file

    if model_cfg.pretrained == "coco":
        mapping = mapping_for(model_cfg.arch, model_cfg.backbone)
        return hub_weight_file(mapping.coco_weights.url) if mapping and mapping.coco_weights else None
    if model_cfg.pretrained == "imagenet":
        # The trunk a backbone is built on: the longest name of IMAGENET_WEIGHTS it starts with
        # (mobilenet_v3_large_320_fpn -> mobilenet_v3_large, resnet50_fpn -> resnet50).
        trunks = sorted((name for name in IMAGENET_WEIGHTS if model_cfg.backbone.startswith(name)), key=len)
        return hub_weight_file(IMAGENET_WEIGHTS[trunks[-1]].url) if trunks else None
    return None


def coco_categories(arch: str, backbone: str) -> list[str]:
    """torchvision's category names of its COCO detector of this architecture, indexed by COCO category
    id (0: background, "N/A": ids COCO leaves unused); ConfigError where it has none."""
    return list(_coco_enum(arch, backbone).meta["categories"])
