"""torchvision's detectors built with our settings: the references we compare against.

    peer = build_peer(config, num_classes, ours)   # torchvision's twin of the configured model

Faster R-CNN (`build_torchvision_faster_rcnn`): torchvision's FasterRCNN on our backbone's trunk and
per-RoI head, with the same anchors, RoI pooling and size, sampling, thresholds and postprocess limits
as `build_faster_rcnn` for the same config; what differs is torchvision's implementation (per-image
Python loops in its RPN and RoI heads).

SSD300 on VGG16 (`torchvision_ssd300`): torchvision's SSD on its VGG16 extractor with our default boxes
(aspect ratios, scales, steps), matching threshold, negative:positive ratio and postprocess settings.
It clamps default boxes in cx, cy, w, h rather than clipping corners, and loops over images (loss)
and over images and classes (postprocess) in Python.

SSDlite320 (`torchvision_ssdlite320`): torchvision's own `ssdlite320_mobilenet_v3_large` with our
postprocess and matching settings; its layout is ours for `model.arch: ssdlite`, so our weights load
into it (detect.models.weights' key mapping).

Other SSDs (SSD512, other trunks; `torchvision_ssd_on_trunk`): torchvision's SSD on a copy of our trunk
(torchvision ships no extractor of the same shape; its SSD512 extras differ).

Every peer comes with random weights (benchmarks.shared_weights copies ours into it) and is a raw
torchvision model: wrap it in benchmarks.torchvision_adapter.TorchvisionAdapter for our contract, or
switch its input transform off (`switch_off_transform`) and hand it lists of our normalized images.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.ssd import SSD, SSDHead, _vgg_extractor
from torchvision.models.detection.ssdlite import ssdlite320_mobilenet_v3_large
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from detect.config import Config, InputConfig, ModelConfig, SSDConfig
from detect.models.default_boxes import box_scales
from detect.models.faster_rcnn import build_detector_backbone


class _Trunk(nn.Module):
    """Our trunk with the `out_channels` attribute torchvision's FasterRCNN reads; a pyramid's list of
    maps becomes the dict of maps torchvision's RPN and MultiScaleRoIAlign take ("0", "1", ..., "pool")."""

    def __init__(self, trunk: nn.Module, out_channels: int, levels: int = 1):
        super().__init__()
        self.body = trunk
        self.out_channels = out_channels
        self.names = [str(index) for index in range(levels - 1)] + ["pool"] if levels > 1 else None

    def forward(self, images: torch.Tensor) -> torch.Tensor | OrderedDict:
        features = self.body(images)
        return features if self.names is None else OrderedDict(zip(self.names, features))


class _RoIPool(MultiScaleRoIAlign):
    """RoIPool with torchvision's box_roi_pool interface. torchvision ships only MultiScaleRoIAlign and
    its FasterRCNN accepts nothing else (an isinstance check), hence the subclass; only the single
    feature map "0" and the pooling itself are used."""

    def __init__(self, output_size: int, stride: int):
        super().__init__(["0"], output_size, sampling_ratio=0)
        self.pool_size = output_size
        self.spatial_scale = 1.0 / stride

    def forward(self, features: dict, proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        return roi_pool(features["0"], proposals, self.pool_size, self.spatial_scale)


def build_torchvision_faster_rcnn(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int) -> FasterRCNN:
    """torchvision FasterRCNN for `num_classes` foreground classes with the settings of `model_cfg`."""
    backbone = build_detector_backbone(model_cfg)
    output_size = model_cfg.roi_output_size or backbone.roi_output_size
    sizes, ratios = tuple(model_cfg.anchors.sizes), tuple(model_cfg.anchors.aspect_ratios)
    if backbone.is_pyramid:  # torchvision's FPN layouts: a size, or a list of sizes, per level
        trunk = _Trunk(backbone.trunk, backbone.out_channels, len(backbone.stride))
        pooler = MultiScaleRoIAlign(trunk.names[:backbone.roi_levels], output_size, sampling_ratio=2)
        level_sizes = tuple(tuple(size) if isinstance(size, list) else (size,) for size in sizes)
        anchor_generator = AnchorGenerator(level_sizes, (ratios,) * len(sizes))
    else:
        trunk = _Trunk(backbone.trunk, backbone.out_channels)
        anchor_generator = AnchorGenerator((sizes,), (ratios,))
        if model_cfg.roi_pool == "roi_align":
            pooler = MultiScaleRoIAlign(["0"], output_size, sampling_ratio=2)
        else:
            pooler = _RoIPool(output_size, backbone.stride)
    rpn, roi = model_cfg.rpn, model_cfg.roi_heads
    size = input_cfg.min_size if input_cfg.resize == "keep_ratio" else input_cfg.size
    max_size = input_cfg.max_size if input_cfg.resize == "keep_ratio" else input_cfg.size
    model = FasterRCNN(
        trunk,
        num_classes=None,
        min_size=size,
        max_size=max_size,
        image_mean=list(input_cfg.mean),  # ours, as for the SSD peers (switch_off_transform skips it)
        image_std=list(input_cfg.std),
        rpn_anchor_generator=anchor_generator,
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn.pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn.post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn.post_nms_top_n_test,
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.fg_iou_thresh,
        rpn_bg_iou_thresh=rpn.bg_iou_thresh,
        rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_positive_fraction=rpn.positive_fraction,
        rpn_score_thresh=rpn.score_threshold,
        box_roi_pool=pooler,
        box_head=backbone.head,
        box_predictor=FastRCNNPredictor(backbone.head_out_channels, num_classes + 1),
        box_score_thresh=roi.score_threshold,
        box_nms_thresh=roi.nms_thresh,
        box_detections_per_img=roi.detections_per_img,
        box_fg_iou_thresh=roi.fg_iou_thresh,
        box_bg_iou_thresh=roi.bg_iou_thresh_hi,
        box_batch_size_per_image=roi.batch_size_per_image,
        box_positive_fraction=roi.positive_fraction,
        bbox_reg_weights=tuple(roi.box_weights),
    )
    model.rpn.min_size = rpn.min_box_size  # torchvision's default drops only boxes under 1e-3 pixels
    return model


def torchvision_ssd300(num_classes: int, ssd_cfg: SSDConfig | None = None, input_cfg: InputConfig | None = None) -> SSD:
    """torchvision's SSD (VGG16, 6 maps) for `num_classes` foreground classes, with our settings."""
    ssd_cfg = ssd_cfg or SSDConfig()
    input_cfg = input_cfg or InputConfig(resize="fixed", size=300)
    num_maps = len(ssd_cfg.aspect_ratios)
    if num_maps != 6:
        raise ValueError(f"torchvision's VGG16 SSD extractor gives 6 feature maps (SSD300), not {num_maps}")
    backbone = _vgg_extractor(torchvision.models.vgg16(weights=None), highres=False, trainable_layers=5)
    return SSD(backbone, _default_boxes(ssd_cfg), (input_cfg.size, input_cfg.size), num_classes + 1,
               image_mean=list(input_cfg.mean), image_std=list(input_cfg.std), **_ssd_settings(ssd_cfg))


def torchvision_ssdlite320(num_classes: int, ssd_cfg: SSDConfig, input_cfg: InputConfig) -> SSD:
    """torchvision's SSDlite320 MobileNetV3-Large for `num_classes` foreground classes, our settings."""
    return ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes + 1,
        image_mean=list(input_cfg.mean), image_std=list(input_cfg.std), **_ssd_settings(ssd_cfg),
    )


class TrunkAsFeatureDict(nn.Module):
    """Our SSD trunk (a list of maps) as the OrderedDict of maps torchvision's SSD expects."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.out_channels = list(trunk.out_channels)

    def forward(self, images: torch.Tensor) -> OrderedDict:
        return OrderedDict((str(i), x) for i, x in enumerate(self.trunk(images)))


def torchvision_ssd_on_trunk(ours: nn.Module, ssd_cfg: SSDConfig, size: int) -> SSD:
    """torchvision's SSD on a copy of our SSD's trunk, with our default boxes and settings."""
    anchors = _default_boxes(ssd_cfg)
    trunk = TrunkAsFeatureDict(copy.deepcopy(ours.trunk))
    head = SSDHead(trunk.out_channels, anchors.num_anchors_per_location(), ours.num_classes + 1)
    return SSD(trunk, anchors, (size, size), ours.num_classes + 1, head=head, **_ssd_settings(ssd_cfg))


def _default_boxes(ssd_cfg: SSDConfig) -> DefaultBoxGenerator:
    num_maps = len(ssd_cfg.aspect_ratios)
    return DefaultBoxGenerator(
        [[int(r) if float(r).is_integer() else r for r in ratios] for ratios in ssd_cfg.aspect_ratios],
        scales=box_scales(num_maps, ssd_cfg.min_scale, ssd_cfg.max_scale, ssd_cfg.first_scale, ssd_cfg.last_scale),
        steps=ssd_cfg.steps,
    )


def _ssd_settings(ssd_cfg: SSDConfig) -> dict:
    """Our postprocess and matching settings under torchvision SSD's argument names."""
    return {"score_thresh": ssd_cfg.score_threshold, "nms_thresh": ssd_cfg.nms_thresh,
            "detections_per_img": ssd_cfg.detections_per_img, "iou_thresh": ssd_cfg.iou_thresh,
            "topk_candidates": ssd_cfg.top_k_per_class, "positive_fraction": 1.0 / (1.0 + ssd_cfg.neg_pos_ratio)}


def build_peer(config: Config, num_classes: int, ours: nn.Module | None = None) -> nn.Module:
    """torchvision's counterpart of the configured model (see the module docstring); `ours` (built from
    `config`) is needed only where the peer runs on a copy of our trunk, and built when not given."""
    model_cfg = config.model
    if model_cfg.arch == "faster_rcnn":
        return build_torchvision_faster_rcnn(model_cfg, config.input, num_classes)
    if model_cfg.arch == "ssdlite" and model_cfg.backbone == "mobilenet_v3_large":
        return torchvision_ssdlite320(num_classes, model_cfg.ssd, config.input)
    if model_cfg.backbone == "vgg16" and len(model_cfg.ssd.aspect_ratios) == 6:
        return torchvision_ssd300(num_classes, model_cfg.ssd, config.input)
    if ours is None:
        from detect.models.build import build_model

        ours = build_model(model_cfg, config.input, num_classes)
    return torchvision_ssd_on_trunk(ours, model_cfg.ssd, config.input.size)
