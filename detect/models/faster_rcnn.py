"""Faster R-CNN (Ren et al., 2015): a backbone, the RPN, and Fast R-CNN heads on its proposals.

The backbone is a stride-16 trunk (C4 and VGG designs) or a feature pyramid (FPN: `resnet50_fpn`, the
layout of torchvision's `fasterrcnn_resnet50_fpn`; `mobilenet_v3_large_fpn`, that of
`fasterrcnn_mobilenet_v3_large_fpn`; their state dicts load: detect/models/weights.py).

Keeps the model contract of detect/models/__init__.py:
    model(images [B, 3, H, W], image_sizes [B, 2], targets=None) -> losses dict, or raw outputs
    model.postprocess(outputs, image_sizes, scales) -> padded detections (boxes in original pixels)
Losses: loss_rpn_objectness, loss_rpn_box, loss_classifier, loss_box_reg.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from detect.config import InputConfig, ModelConfig
from detect.errors import ConfigError
from detect.models.anchors import AnchorGenerator
from detect.models.backbones import Backbone, build_backbone
from detect.models.backbones.tiny_resnet import tiny_resnet_head
from detect.models.backbones.weight_files import DETECTOR_WEIGHTS
from detect.models.boxes import pad_ground_truth
from detect.models.class_rows import ClassRows
from detect.models.detection_model import DetectionModel
from detect.models.linear import use_onednn_linear
from detect.models.registry import DETECTORS
from detect.models.roi_heads import RoIHeads
from detect.models.rpn import RegionProposalNetwork, RPNHead
from detect.models.weights import BBOX_PRED, CLS_SCORE, load_detector_weights, read_detector_weights


@DETECTORS.register("faster_rcnn")
class FasterRCNN(DetectionModel):
    # The predictor: C + 1 classifier rows (background first), 4 box rows per foreground class.
    class_rows = (ClassRows(re.escape(CLS_SCORE)), ClassRows(re.escape(BBOX_PRED), per_class=4, background=False))

    def __init__(self, backbone: Backbone, rpn: RegionProposalNetwork, roi_heads: RoIHeads, num_classes: int):
        super().__init__()
        # The per-RoI head (res5, or fc6/fc7) lives in roi_heads only: one copy in the state dict.
        if roi_heads.box_head is backbone.head:
            backbone.head = None
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = num_classes
        # On a CPU, oneDNN's convolutions are faster on NHWC maps, and every layer keeps its input's layout
        # (docs/benchmarks.md, CPU fast paths); RoIAlign's pixel table is then a view, not a copy.
        # Training steps always run so. Inference only in the copy fold_batchnorm makes for `detect infer`:
        # the other order of summation moves boxes by up to 2e-3 pixels, beyond the tolerance of the tests
        # that compare this model's detections with torchvision's. (The switch: DetectionModel.nhwc_inference.)

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[dict] | None = None):
        if images.device.type == "cpu" and (self.training or self.nhwc_inference):
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        image_sizes = image_sizes.to(images.device)
        if targets is None:
            proposals, proposal_valid, _ = self.rpn(features, image_sizes)
            return self.roi_heads(features, proposals, proposal_valid)
        gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets, images.device)
        proposals, proposal_valid, rpn_losses = self.rpn(features, image_sizes, gt_boxes, gt_valid)
        roi_losses = self.roi_heads(features, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid)
        return {**rpn_losses, **roi_losses}

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        self.roi_heads.class_weights = weights

    reference_box_name = "RPN anchors"
    reference_box_keys = "model.anchors.sizes, model.anchors.aspect_ratios, input.min_size / input.max_size"

    def reference_boxes(self, height: int, width: int) -> tuple[torch.Tensor, float]:
        """The RPN's anchors and its positive IoU (rpn.fg_iou_thresh); see DetectionModel."""
        anchors = self.rpn.anchors(self._map_shapes(self.backbone, height, width))[0]
        return anchors, self.rpn.fg_iou_thresh

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        device = outputs["rois"].device
        return self.roi_heads.postprocess(outputs, image_sizes.to(device), scales.to(device))

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
                    class_names: list[str] | None = None) -> "FasterRCNN":
        return build_faster_rcnn(model_cfg, input_cfg, num_classes, class_names)


def _vgg_head(in_channels: int, pool_size: int, width: int) -> nn.Module:
    """fc6/fc7 of a chosen width (random init), for `representation_size` other than VGG16's 4096."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d((pool_size, pool_size)), nn.Flatten(1),
        nn.Linear(in_channels * pool_size * pool_size, width), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(width, width), nn.ReLU(inplace=True), nn.Dropout(),
    )


def skip_identity_pool(head: nn.Module, roi_size: int) -> None:
    """Replace a head's leading AdaptiveAvgPool2d to roi_size x roi_size (VGG's, before fc6) by nn.Identity,
    in place. On roi_size x roi_size RoIs it changes nothing but still copies every pooled RoI forward
    and backward: 5 % of a VGG16 training step on a CPU. It has no parameters: the state dict stays."""
    if isinstance(head, nn.Sequential) and isinstance(head[0], nn.AdaptiveAvgPool2d):
        size = head[0].output_size
        if tuple(size if isinstance(size, (tuple, list)) else (size, size)) == (roi_size, roi_size):
            head[0] = nn.Identity()


def build_detector_backbone(model_cfg: ModelConfig, trunk_pretrained: str | None = None) -> Backbone:
    """The configured backbone; VGG's fc6/fc7 are rebuilt (random) if `representation_size` is not 4096.

    `trunk_pretrained`: what the trunk loads, when not `model.pretrained` (DETECTOR_WEIGHTS: nothing,
    the detector's weights come later)."""
    pretrained = model_cfg.pretrained if trunk_pretrained is None else trunk_pretrained
    backbone = build_backbone(model_cfg.backbone, pretrained, model_cfg.trainable_layers)
    representation = model_cfg.roi_heads.representation_size
    if model_cfg.backbone.startswith("vgg") and representation != backbone.head_out_channels:
        backbone.head = _vgg_head(backbone.out_channels, 7, representation)
        backbone.head_out_channels = representation
    roi_size = model_cfg.roi_output_size
    if model_cfg.backbone == "tiny_resnet" and roi_size is not None and roi_size != backbone.roi_output_size:
        backbone.head = tiny_resnet_head(backbone.out_channels, roi_size)  # its fc6 is sized by the RoI
        backbone.roi_output_size = roi_size
    return backbone


def build_faster_rcnn(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
                      class_names: list[str] | None = None) -> FasterRCNN:
    """Faster R-CNN from the `model` config section (`input` is not needed: resizing is the data's job).

    `class_names` (the C foreground names, when known) decide which predictor rows of detector weights
    (`model.pretrained`: coco or a file) are carried over."""
    if num_classes < 1:
        raise ConfigError(f"Faster R-CNN needs at least one foreground class, got {num_classes}")
    detector_weights = read_detector_weights(model_cfg.pretrained, model_cfg.arch, model_cfg.backbone)
    backbone = build_detector_backbone(model_cfg, DETECTOR_WEIGHTS if detector_weights else None)
    _check_pyramid_settings(model_cfg, backbone)
    anchors = AnchorGenerator(model_cfg.anchors.sizes, model_cfg.anchors.aspect_ratios, backbone.stride)
    rpn_cfg, roi_cfg = model_cfg.rpn, model_cfg.roi_heads
    roi_size = model_cfg.roi_output_size or backbone.roi_output_size
    skip_identity_pool(backbone.head, roi_size)
    rpn = RegionProposalNetwork(
        anchors,
        RPNHead(backbone.out_channels, rpn_cfg.conv_channels or backbone.out_channels, anchors.num_anchors),
        fg_iou_thresh=rpn_cfg.fg_iou_thresh,
        bg_iou_thresh=rpn_cfg.bg_iou_thresh,
        batch_size_per_image=rpn_cfg.batch_size_per_image,
        positive_fraction=rpn_cfg.positive_fraction,
        pre_nms_top_n=(rpn_cfg.pre_nms_top_n_train, rpn_cfg.pre_nms_top_n_test),
        post_nms_top_n=(rpn_cfg.post_nms_top_n_train, rpn_cfg.post_nms_top_n_test),
        nms_thresh=rpn_cfg.nms_thresh,
        min_box_size=rpn_cfg.min_box_size,
        loss_box_weight=rpn_cfg.loss_box_weight,
        score_threshold=rpn_cfg.score_threshold,
    )
    roi_heads = RoIHeads(
        backbone.head,
        backbone.head_out_channels,
        num_classes,
        pool=model_cfg.roi_pool,
        output_size=roi_size,
        stride=backbone.stride[:backbone.roi_levels] if backbone.is_pyramid else backbone.stride,
        fg_iou_thresh=roi_cfg.fg_iou_thresh,
        bg_iou_thresh_hi=roi_cfg.bg_iou_thresh_hi,
        bg_iou_thresh_lo=roi_cfg.bg_iou_thresh_lo,
        batch_size_per_image=roi_cfg.batch_size_per_image,
        positive_fraction=roi_cfg.positive_fraction,
        box_weights=roi_cfg.box_weights,
        score_threshold=roi_cfg.score_threshold,
        nms_thresh=roi_cfg.nms_thresh,
        detections_per_img=roi_cfg.detections_per_img,
        loss_box_weight=roi_cfg.loss_box_weight,
    )
    use_onednn_linear(roi_heads)  # the box head's fc layers: on a CPU, oneDNN's products are the fast ones
    model = FasterRCNN(backbone, rpn, roi_heads, num_classes)
    if detector_weights is not None:
        load_detector_weights(model, detector_weights, class_names)
    return model


def _check_pyramid_settings(model_cfg: ModelConfig, backbone: Backbone) -> None:
    sizes = model_cfg.anchors.sizes
    if not backbone.is_pyramid:
        if any(isinstance(size, list) for size in sizes):
            raise ConfigError(f"model.anchors.sizes: backbone '{model_cfg.backbone}' has one feature map and takes "
                              f"a flat list of sizes, not one list per pyramid level")
        return
    levels = len(backbone.stride)
    if len(sizes) != levels:
        raise ConfigError(f"model.anchors.sizes: backbone '{model_cfg.backbone}' has {levels} pyramid levels and "
                          f"takes one anchor size (or list of sizes) per level, got {len(sizes)} entries")
    if model_cfg.roi_pool != "roi_align":
        raise ConfigError(f"model.roi_pool: backbone '{model_cfg.backbone}' pools RoIs from its pyramid with "
                          f"roi_align, not {model_cfg.roi_pool}")
