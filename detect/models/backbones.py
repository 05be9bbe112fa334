"""Backbone factory: a plain dict from name to builder, for the two-stage detector (and SSD's weights).

Every builder takes `(pretrained, trainable_layers)` and returns a `Backbone`:

    backbone.trunk             nn.Module: images float32 [B, 3, H, W] -> features [B, out_channels, H/16, W/16]
    backbone.head              nn.Module: pooled RoIs [R, out_channels, s, s] -> [R, head_out_channels]
    backbone.out_channels      channels of the trunk's feature map
    backbone.stride            16 for every backbone here
    backbone.head_out_channels width of the per-RoI feature
    backbone.roi_output_size   the RoI pooling size the head was designed for (7 VGG, 14 ResNet C4)

`vgg16`, `vgg16_bn`: conv1_1..conv5_3 (the last max pool dropped) as trunk; fc6, fc7 as head (after an
adaptive pool to 7 x 7, which is the identity for 7 x 7 RoIs, as in torchvision's VGG).
`resnet18/34/50/101`: the C4 layout of the Faster R-CNN paper's ResNet variant (He et al., 2016):
conv1..layer3 (res4) as trunk, layer4 (res5) + global average pool as head; BatchNorm frozen when trained
weights are loaded, trainable from random weights.

`mobilenet_v3_large`, `mobilenet_v3_small` (Howard et al., 2019): the same C4 cut of torchvision's
MobileNetV3 `features`: the blocks up to the last stride-16 one as trunk (112 / 48 channels), the
stride-32 blocks + global average pool as head (960 / 576); BatchNorm frozen as for ResNet.

`tiny_resnet`: detect.models.tiny_resnet's stem..layer3 (128 channels) as trunk; as head, two fully
connected layers of 256 on the flattened 7 x 7 RoI (layer4 on every RoI would cost more than the
trunk). Random weights only: the backbone of the CPU-sized synthetic Faster R-CNN.

`resnet18_fpn` .. `resnet101_fpn`: the layout of torchvision's `fasterrcnn_resnet50_fpn` (Lin et al.,
2017): a feature pyramid (256 channels) over C2..C5 plus a max-pool level, so the trunk returns a list
of 5 maps at strides 4, 8, 16, 32, 64 and `stride` is that tuple; RoIs pool from the first four
(`roi_levels`) at 7 x 7 into a two-layer MLP head (fc6, fc7: 1024 wide).

`mobilenet_v3_large_fpn`, `mobilenet_v3_large_320_fpn`: the layout of torchvision's
`fasterrcnn_mobilenet_v3_large_fpn` (and of its 320-pixel variant, the same network): a feature pyramid
(256 channels) over MobileNetV3-Large's last two stages (the output of the last strided block, 160
channels, and of the final 1x1 conv, 960 channels, both at stride 32) plus a max-pool level: 3 maps at
strides 32, 32, 64. RoIs pool from the first map at 7 x 7 into the same MLP head. BatchNorm as
torchvision builds it for its detector: FrozenBatchNorm2d with trained weights, BatchNorm2d from random
ones, both with eps 1e-5 (not the classifier's 1e-3). The two names differ only in the COCO checkpoint
`pretrained: coco` loads (detect/models/weights.py); input size and RPN settings come from the config.

`pretrained`: "none" (random init), "imagenet" (torchvision's weight enum; the file is taken from the
torch hub cache, downloaded there when missing), the path of a torchvision classification state dict, or
DETECTOR_WEIGHTS: built as for trained weights (frozen BatchNorm, default trainable stages) but left
random, because the whole detector's weights are loaded over it (detect/models/weights.py).
`trainable_layers`: how many stages, counted from the top, keep `requires_grad`; the rest are frozen.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import CheckpointError, ConfigError
from detect.models.tiny_resnet import TINY_RESNET_CHANNELS, TINY_RESNET_STAGE_NAMES, tiny_resnet_stages
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

# Stages counted for `trainable_layers`, bottom to top, and how many train by default with weights.
# VGG16: the five conv blocks (the fc6/fc7 head always trains); 3 trains conv3_1 and up, as the paper.
# ResNet: conv1, layer1..layer4 (layer4 is the head); 3 is torchvision's default for its detectors.
VGG_STAGES = 5
RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")
# MobileNetV3: the stem, each strided block with the blocks after it, and the last 1x1 conv (6 stages).
MOBILENET_V3 = ("mobilenet_v3_large", "mobilenet_v3_small")
DEFAULT_TRAINABLE = 3

# `pretrained` value for a trunk whose weights come with the detector's (a COCO checkpoint, a file).
DETECTOR_WEIGHTS = "detector"

# The FPN layout of torchvision's fasterrcnn_resnet50_fpn.
FPN_CHANNELS = 256
FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_ROI_LEVELS = 4
FPN_HEAD_WIDTH = 1024
# The FPN layout of torchvision's fasterrcnn_mobilenet_v3_large_fpn: two stride-32 maps and the max-pool
# level. torchvision pools RoIs from both stride-32 maps, but with equal strides its level mapper sends
# every RoI to the first, so only the first is pooled from here (the same numbers, one RoIAlign less).
MOBILENET_FPN_STRIDES = (32, 32, 64)
MOBILENET_FPN_ROI_LEVELS = 1


class Backbone(nn.Module):
    """A trunk and its per-RoI head, with the numbers the detector needs to wire them.

    A single-map trunk has an int `stride`; a pyramid trunk returns a list of maps, `stride` holds one
    stride per map, and RoIs pool from the first `roi_levels` of them.
    """

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        out_channels: int,
        head_out_channels: int,
        roi_output_size: int,
        stride: int | tuple[int, ...] = 16,
        roi_levels: int = 1,
    ):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.out_channels = out_channels
        self.head_out_channels = head_out_channels
        self.roi_output_size = roi_output_size
        self.stride = stride
        self.roi_levels = roi_levels

    @property
    def is_pyramid(self) -> bool:
        return isinstance(self.stride, tuple)

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.trunk(images)


class PyramidTrunk(BackboneWithFPN):
    """torchvision's BackboneWithFPN (`body`, `fpn`: the parameter names of its detectors), returning
    the maps as a list, finest first: images [B, 3, H, W] -> [[B, 256, H / s, W / s] for s in strides]."""

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(super().forward(images).values())


# ---------------------------------------------------------------------------------------------------
# Weights


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


def classifier_model(name: str, pretrained: str = "none", **constructor_args) -> nn.Module:
    """torchvision's classifier `name` with its weights loaded (`constructor_args` go to its builder).

    BatchNorm: with loaded weights, ResNets get FrozenBatchNorm2d (ImageNet statistics; detection
    batches are too small to re-estimate them). From random weights there are no statistics to keep,
    and a frozen identity norm leaves a deep ResNet unnormalised, so ordinary BatchNorm2d trains.
    """
    if name not in IMAGENET_WEIGHTS:
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (allowed: {', '.join(BACKBONES)})")
    constructor = getattr(torchvision.models, name)
    if name.startswith("resnet") and uses_frozen_batchnorm(pretrained):
        model = constructor(weights=None, norm_layer=FrozenBatchNorm2d, **constructor_args)
    else:
        model = constructor(weights=None, **constructor_args)
    return load_classifier_weights(model, name, pretrained)


def mobilenet_v3_stage_starts(features: nn.Sequential) -> list[int]:
    """Indices into MobileNetV3 `features` where its stages begin: the stem, every strided block
    (torchvision marks them `_is_cn`) and the last 1x1 convolution, as torchvision's detectors count."""
    strided = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    return [0, *strided, len(features) - 1]


def freeze_mobilenet_v3(features: nn.Sequential, trainable: int) -> None:
    """Freeze all but the top `trainable` stages of MobileNetV3 `features` (0: all frozen)."""
    starts = mobilenet_v3_stage_starts(features)
    first_trainable = len(features) if trainable == 0 else starts[len(starts) - trainable]
    _freeze(features[:first_trainable])


def uses_frozen_batchnorm(pretrained: str) -> bool:
    """Backbones freeze BatchNorm when they start from trained weights (imagenet or a file)."""
    return pretrained != "none"


# ---------------------------------------------------------------------------------------------------
# Freezing


def _check_trainable_layers(name: str, trainable_layers: int | None, stages: int, pretrained: str) -> int:
    if trainable_layers is None:
        # Random weights: freezing random stages would only hurt, so all stages train.
        return stages if pretrained == "none" else DEFAULT_TRAINABLE
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= stages:
        raise ConfigError(
            f"model.trainable_layers: {trainable_layers!r} is out of range for {name} (allowed: 0..{stages})"
        )
    return trainable_layers


def _freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


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


# ---------------------------------------------------------------------------------------------------
# Builders


def _vgg_stages(features: nn.Sequential) -> list[nn.Sequential]:
    """The five conv blocks of VGG's `features`, each ending with its max pool."""
    stages, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    return stages


def _build_vgg(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    trainable = _check_trainable_layers(name, trainable_layers, VGG_STAGES, pretrained)
    model = classifier_model(name, pretrained)
    if uses_frozen_batchnorm(pretrained):
        model = frozen_batchnorm(model)
    stages = _vgg_stages(model.features)
    stages[-1] = stages[-1][:-1]  # conv5_3 at stride 16: pool5 dropped
    for stage in stages[: VGG_STAGES - trainable]:
        _freeze(stage)
    trunk = nn.Sequential(*[layer for stage in stages for layer in stage])
    # fc6, relu, dropout, fc7, relu, dropout: fc8 (the 1000-way classifier) is dropped.
    head = nn.Sequential(nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1), *model.classifier[:-1])
    fc7 = model.classifier[3]
    return Backbone(trunk, head, out_channels=512, head_out_channels=fc7.out_features, roi_output_size=7)


def _resnet_classifier(name: str, pretrained: str, trainable_layers: int | None) -> nn.Module:
    """torchvision's ResNet `name` with its weights, the stages below the trainable ones frozen."""
    trainable = _check_trainable_layers(name, trainable_layers, len(RESNET_STAGES), pretrained)
    model = classifier_model(name, pretrained)
    for stage_name in RESNET_STAGES[: len(RESNET_STAGES) - trainable]:
        _freeze(getattr(model, stage_name))
        if stage_name == "conv1":
            _freeze(model.bn1)  # the stem's norm goes with it (trainable BatchNorm from random weights)
    return model


def _build_resnet(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = _resnet_classifier(name, pretrained, trainable_layers)
    trunk = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3
    )
    head = nn.Sequential(model.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    out_channels = _last_channels(model.layer3)
    head_out_channels = _last_channels(model.layer4)
    return Backbone(trunk, head, out_channels, head_out_channels, roi_output_size=14)


def _build_mobilenet_v3(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = classifier_model(name, pretrained)
    if uses_frozen_batchnorm(pretrained):
        model = frozen_batchnorm(model)
    features = model.features
    starts = mobilenet_v3_stage_starts(features)
    freeze_mobilenet_v3(features, _check_trainable_layers(name, trainable_layers, len(starts), pretrained))
    c5 = starts[-2]  # the stride-32 block: everything before it runs at stride 16
    trunk = features[:c5]
    head = nn.Sequential(*features[c5:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    out_channels = trunk[-1].out_channels
    head_out_channels = features[-1].out_channels
    return Backbone(trunk, head, out_channels, head_out_channels, roi_output_size=14)


TINY_RESNET_HEAD_WIDTH = 256


def _build_tiny_resnet(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    if pretrained != "none":
        raise ConfigError(f"model.pretrained: {name} has no trained weights, use none (got '{pretrained}')")
    stages = tiny_resnet_stages()
    trainable = _check_trainable_layers(name, trainable_layers, len(TINY_RESNET_STAGE_NAMES) - 1, pretrained)
    for stage in stages[: len(stages) - 1 - trainable]:
        _freeze(stage)
    trunk = nn.Sequential(*stages[:4])
    out_channels, roi_size = TINY_RESNET_CHANNELS[3], 7
    head = tiny_resnet_head(out_channels, roi_size)
    return Backbone(trunk, head, out_channels, TINY_RESNET_HEAD_WIDTH, roi_output_size=roi_size)


def tiny_resnet_head(in_channels: int, roi_size: int) -> nn.Sequential:
    """Pooled RoIs [R, in_channels, roi_size, roi_size] -> [R, TINY_RESNET_HEAD_WIDTH]: two fc layers."""
    return nn.Sequential(
        nn.Flatten(1),
        nn.Linear(in_channels * roi_size * roi_size, TINY_RESNET_HEAD_WIDTH),
        nn.ReLU(inplace=True),
        nn.Linear(TINY_RESNET_HEAD_WIDTH, TINY_RESNET_HEAD_WIDTH),
        nn.ReLU(inplace=True),
    )


def _build_resnet_fpn(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    model = _resnet_classifier(name.removesuffix("_fpn"), pretrained, trainable_layers)
    stages = ("layer1", "layer2", "layer3", "layer4")
    trunk = PyramidTrunk(
        model,
        return_layers={stage: str(index) for index, stage in enumerate(stages)},
        in_channels_list=[_last_channels(getattr(model, stage)) for stage in stages],
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    head = TwoMLPHead(FPN_CHANNELS * 7 * 7, FPN_HEAD_WIDTH)
    return Backbone(trunk, head, FPN_CHANNELS, FPN_HEAD_WIDTH, roi_output_size=7, stride=FPN_STRIDES,
                    roi_levels=FPN_ROI_LEVELS)


def _build_mobilenet_v3_fpn(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    classifier_name = "mobilenet_v3_large"
    # torchvision's detector hands MobileNetV3 a plain norm layer, so its BatchNorm eps is 1e-5 where the
    # classifier's is 1e-3; its COCO weights were trained that way.
    norm_layer = FrozenBatchNorm2d if uses_frozen_batchnorm(pretrained) else nn.BatchNorm2d
    model = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=norm_layer)
    features = load_classifier_weights(model, classifier_name, pretrained).features
    starts = mobilenet_v3_stage_starts(features)
    freeze_mobilenet_v3(features, _check_trainable_layers(name, trainable_layers, len(starts), pretrained))
    levels = starts[-2:]  # the last strided block and the final 1x1 conv
    trunk = PyramidTrunk(
        features,
        return_layers={str(block): str(level) for level, block in enumerate(levels)},
        in_channels_list=[features[block].out_channels for block in levels],
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    head = TwoMLPHead(FPN_CHANNELS * 7 * 7, FPN_HEAD_WIDTH)
    return Backbone(trunk, head, FPN_CHANNELS, FPN_HEAD_WIDTH, roi_output_size=7, stride=MOBILENET_FPN_STRIDES,
                    roi_levels=MOBILENET_FPN_ROI_LEVELS)


def _last_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    last_norm = block.bn3 if hasattr(block, "bn3") else block.bn2
    return last_norm.weight.shape[0]


def _named(builder: Callable[..., Backbone], name: str) -> Callable[[str, int | None], Backbone]:
    def build(pretrained: str = "none", trainable_layers: int | None = None) -> Backbone:
        return builder(name, pretrained, trainable_layers)

    build.__name__ = f"build_{name}"
    return build


BACKBONES: dict[str, Callable[[str, int | None], Backbone]] = {
    "vgg16": _named(_build_vgg, "vgg16"),
    "vgg16_bn": _named(_build_vgg, "vgg16_bn"),
    "resnet18": _named(_build_resnet, "resnet18"),
    "resnet34": _named(_build_resnet, "resnet34"),
    "resnet50": _named(_build_resnet, "resnet50"),
    "resnet101": _named(_build_resnet, "resnet101"),
    "mobilenet_v3_large": _named(_build_mobilenet_v3, "mobilenet_v3_large"),
    "mobilenet_v3_small": _named(_build_mobilenet_v3, "mobilenet_v3_small"),
    "tiny_resnet": _named(_build_tiny_resnet, "tiny_resnet"),
    "resnet18_fpn": _named(_build_resnet_fpn, "resnet18_fpn"),
    "resnet34_fpn": _named(_build_resnet_fpn, "resnet34_fpn"),
    "resnet50_fpn": _named(_build_resnet_fpn, "resnet50_fpn"),
    "resnet101_fpn": _named(_build_resnet_fpn, "resnet101_fpn"),
    "mobilenet_v3_large_fpn": _named(_build_mobilenet_v3_fpn, "mobilenet_v3_large_fpn"),
    "mobilenet_v3_large_320_fpn": _named(_build_mobilenet_v3_fpn, "mobilenet_v3_large_320_fpn"),
}


def build_backbone(name: str, pretrained: str = "none", trainable_layers: int | None = None) -> Backbone:
    """The backbone `name` (a key of BACKBONES); see the module docstring for the arguments."""
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (allowed: {', '.join(BACKBONES)})")
    return BACKBONES[name](pretrained, trainable_layers)
