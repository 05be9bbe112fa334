"""torchvision's FasterRCNN built on our backbone with our settings: the reference we compare against.

Same trunk and per-RoI head (from the backbone factory), same anchors, RoI pooling and size, sampling,
thresholds and postprocess limits as `build_faster_rcnn` for the same config; what differs is
torchvision's implementation (per-image Python loops in its RPN and RoI heads). Used by the speed
benchmark and by tools that train both on the same data.

Input: torchvision's model takes a list of [3, h, w] tensors and resizes and normalises them itself.
Our batches are already resized and normalised, so the peer gets mean 0 / std 1 and the same
min/max size (its resize is then a scale of 1, as close to a no-op as its transform allows). Its
detections are in the pixels of the tensors it is given (resized pixels): divide by `scale` to
compare with ours.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from detect.config import InputConfig, ModelConfig
from detect.models.detections import pad_detections
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
    if backbone.is_pyramid:  # torchvision's fasterrcnn_resnet50_fpn layout: one anchor size per level
        trunk = _Trunk(backbone.trunk, backbone.out_channels, len(backbone.stride))
        pooler = MultiScaleRoIAlign(trunk.names[:backbone.roi_levels], output_size, sampling_ratio=2)
        anchor_generator = AnchorGenerator(tuple((size,) for size in sizes), (ratios,) * len(sizes))
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
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
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
        box_roi_pool=pooler,
        box_head=backbone.head,
        box_predictor=FastRCNNPredictor(backbone.head_out_channels, num_classes + 1),
        box_score_thresh=roi.score_thresh,
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


class TorchvisionFasterRCNN(nn.Module):
    """torchvision's FasterRCNN behind our model contract (detect/models/__init__.py), so the same
    training engine, evaluation and benchmarks run it unchanged.

    forward(images [B, 3, H, W], image_sizes [B, 2], targets=None): each image is cropped to its valid
    region and handed to torchvision as a list; with targets, its loss dict (renamed to our keys);
    without, {"detections": its per-image list, in resized pixels}. postprocess divides by the scale.
    """

    LOSS_NAMES = {"loss_objectness": "loss_rpn_objectness", "loss_rpn_box_reg": "loss_rpn_box",
                  "loss_classifier": "loss_classifier", "loss_box_reg": "loss_box_reg"}

    def __init__(self, model: FasterRCNN, num_classes: int):
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[dict] | None = None):
        sizes = image_sizes.tolist()  # torchvision's transform works per image on the host anyway
        crops = [image[:, :h, :w] for image, (h, w) in zip(images, sizes)]
        if targets is None:
            if self.model.training:  # torchvision's train mode insists on targets
                self.model.eval()
                try:
                    return {"detections": self.model(crops)}
                finally:
                    self.model.train()
            return {"detections": self.model(crops)}
        plain = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        was_training = self.model.training
        self.model.train()  # torchvision computes losses only in train mode (validation loss included)
        try:
            losses = self.model(crops, plain)
        finally:
            self.model.train(was_training)
        return {self.LOSS_NAMES[k]: v for k, v in losses.items()}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        results = []
        for found, scale in zip(outputs["detections"], scales.tolist()):  # already per image: a list
            sx, sy = scale
            boxes = found["boxes"] / found["boxes"].new_tensor([sx, sy, sx, sy])
            results.append({"boxes": boxes, "scores": found["scores"], "labels": found["labels"]})
        return pad_detections(results)


def build_torchvision_peer(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int) -> TorchvisionFasterRCNN:
    """`build_torchvision_faster_rcnn` behind our model contract."""
    return TorchvisionFasterRCNN(build_torchvision_faster_rcnn(model_cfg, input_cfg, num_classes), num_classes)
