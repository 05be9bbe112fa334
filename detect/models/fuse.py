"""Inference-only rewrites of a trained model that keep its outputs (up to float rounding).

`fold_batchnorm(model)` folds every BatchNorm2d (with running statistics) and FrozenBatchNorm2d that
directly follows a convolution into that convolution's weights and bias: the pair becomes one
convolution and an Identity. "Directly follows" is known in two places: consecutive children of an
nn.Sequential or of torchvision's IntermediateLayerGetter (which runs its children in order: the
trunks of the FPN detectors), and the (conv1, bn1), (conv2, bn2), (conv3, bn3) attributes of
torchvision's ResNet and its blocks, whose forward applies each norm right after its convolution.
On a CPU this removes a full pass over every feature map per layer (docs/benchmarks.md, CPU fast paths).
The model must be in eval mode and stays fit only for inference; the caller's model is left alone
(a folded copy is returned).

A DetectionModel (every detector of ours) has an `nhwc_inference` switch, turned on in the copy: on a CPU its
convolutions then run on NHWC maps, faster there and, like folding, different only in float rounding.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.models.detection_model import DetectionModel

# Children run one after the other, in registration order.
IN_ORDER = (nn.Sequential, IntermediateLayerGetter)
# Modules whose forward applies norm `bnK` right after convolution `convK`.
NAMED_PAIRS = {BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
               Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
               ResNet: (("conv1", "bn1"),)}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with each (convolution, norm) pair folded (and NHWC inference
    switched on, see above); the model itself (in eval mode) when there is nothing to change."""
    if not _foldable_pairs(model) and not isinstance(model, DetectionModel):
        return model.eval()
    folded = copy.deepcopy(model).eval()
    for parent, conv_name, norm_name in _foldable_pairs(folded):
        conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
        setattr(parent, norm_name, nn.Identity())
    if isinstance(folded, DetectionModel):
        folded.nhwc_inference = True
    return folded


def _foldable_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, convolution's name, norm's name) of each Conv2d directly followed by a foldable norm."""
    pairs = []
    for module in model.modules():
        if isinstance(module, IN_ORDER):
            names = list(module._modules)
            candidates = zip(names, names[1:])
        else:
            candidates = next((named for kind, named in NAMED_PAIRS.items() if type(module) is kind), ())
        pairs += [(module, conv, norm) for conv, norm in candidates
                  if isinstance(getattr(module, conv), nn.Conv2d) and _is_foldable_norm(getattr(module, norm))]
    return pairs


def _is_foldable_norm(norm: nn.Module) -> bool:
    """A norm with fixed statistics at inference: BatchNorm2d tracking running statistics, or frozen."""
    return (type(norm) is nn.BatchNorm2d and norm.track_running_stats) or type(norm) is FrozenBatchNorm2d
