"""Our weights copied into torchvision's twin of the same model (benchmarks.peers), so both score the
same candidates and a speed comparison covers the same work.

    shared = copy_weights(config, ours, peer)   # False: the shapes do not line up, nothing copied
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.peers import TrunkAsFeatureDict
from detect.config import Config
from detect.models.weights import DetectorMapping, describe_misfit, mapping_for


def copy_weights(config: Config, ours: nn.Module, peer: nn.Module) -> bool:
    """Our weights into `peer` (built by benchmarks.peers.build_peer for `config`); whether they fit."""
    if config.model.arch == "faster_rcnn":
        copy_faster_rcnn_weights(ours, peer)
        return True
    mapping = mapping_for(config.model.arch, config.model.backbone)
    if mapping is not None and not isinstance(peer.backbone, TrunkAsFeatureDict):  # torchvision's own layout
        return copy_mapped_weights(mapping, ours, peer)
    return copy_ssd_weights(ours, peer)


def copy_faster_rcnn_weights(ours: nn.Module, peer: nn.Module) -> None:
    """Load our Faster R-CNN's weights into torchvision's FasterRCNN built on the same backbone
    (benchmarks.peers): trunk, RPN head, box head, classifier and box regression (class
    0's regression rows, which ours does not have, are set to zero)."""
    with torch.no_grad():
        peer.backbone.body.load_state_dict(ours.backbone.trunk.state_dict())
        peer.roi_heads.box_head.load_state_dict(ours.roi_heads.box_head.state_dict())
        rpn_conv = peer.rpn.head.conv[0][0]
        rpn_conv.load_state_dict(ours.rpn.head.conv.state_dict())
        peer.rpn.head.cls_logits.load_state_dict(ours.rpn.head.objectness.state_dict())
        peer.rpn.head.bbox_pred.load_state_dict(ours.rpn.head.deltas.state_dict())
        predictor = peer.roi_heads.box_predictor
        predictor.cls_score.load_state_dict(ours.roi_heads.cls_score.state_dict())
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.bbox_pred.weight[4:] = ours.roi_heads.bbox_pred.weight
        predictor.bbox_pred.bias[4:] = ours.roi_heads.bbox_pred.bias


def copy_ssd_weights(ours: nn.Module, peer: nn.Module) -> bool:
    """Load our SSD's weights into torchvision's SSD on a copy of our trunk (benchmarks.peers.
    torchvision_ssd_on_trunk); False (nothing copied) when the parameter shapes do not line up."""
    pairs = list(zip(ours.trunk.state_dict().values(), peer.backbone.trunk.state_dict().values()))
    heads = [(ours.head.cls_convs, peer.head.classification_head.module_list),
             (ours.head.box_convs, peer.head.regression_head.module_list)]
    for ours_list, peer_list in heads:
        for a, b in zip(ours_list, peer_list):
            pairs += list(zip(a.state_dict().values(), b.state_dict().values()))
    if len(ours.trunk.state_dict()) != len(peer.backbone.trunk.state_dict()) or any(
            a.shape != b.shape for a, b in pairs):
        return False
    with torch.no_grad():
        for source, target in pairs:
            target.copy_(source)
    return True


def copy_mapped_weights(mapping: DetectorMapping, ours: nn.Module, peer: nn.Module) -> bool:
    """Load our weights into torchvision's twin through detect.models.weights' key mapping (SSD300 on
    VGG16, SSDlite320); False (nothing copied) when they do not fit (another tail, number of maps...)."""
    state = mapping.to_torchvision(ours.state_dict())
    if describe_misfit(state, peer.state_dict()) is not None:
        return False
    peer.load_state_dict(state)
    return True
