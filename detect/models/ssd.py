"""SSD: Single Shot MultiBox Detector (Liu et al., 2016), batched end to end.

    model = build_ssd(model_cfg, input_cfg, num_classes)
    losses = model(images, image_sizes, targets)     # {"loss_cls", "loss_box"}
    outputs = model(images, image_sizes)             # {"cls_logits" [B, A, C + 1],
                                                     #  "box_regression" [B, A, 4], "priors" [A, 4]}
    detections = model.postprocess(outputs, image_sizes, scales)

Parts: a trunk giving the feature maps (backbones/, by model.backbone), a 3 x 3 convolution per map predicting
each default box's class scores and encoded offsets, default boxes (default_boxes.py), the multibox
loss (ssd_loss.py) and the batched postprocess (ssd_postprocess.py). Default boxes are made for the
input tensor's actual feature map sizes and scaled to its pixels (H, W), so padding the batch is
harmless; SSD configs use `input.size_divisible: 1` so that a 300 px input gives the paper's maps.
"""

from __future__ import annotations

import torch
from torch import nn

from detect.config import InputConfig, ModelConfig
from detect.errors import ConfigError
from detect.models.backbones import build_ssd_trunk
from detect.models.class_rows import ClassRows
from detect.models.default_boxes import box_scales, boxes_per_location, cached_default_boxes
from detect.models.detection_model import DetectionModel
from detect.models.registry import DETECTORS
from detect.models.ssd_head import SSDHead
from detect.models.ssd_loss import MultiBoxLoss
from detect.models.ssd_postprocess import postprocess_detections


@DETECTORS.register("ssd")
class SSD(DetectionModel):
    """The detector; see the module docstring and detect/models/__init__.py for the contract."""

    # Each map's classification convolution: one block of C + 1 rows per default box of a location.
    class_rows = (ClassRows(r"head\.cls_convs\.\d+\."),)
    # On a CPU, depthwise convolutions are fast only on NHWC (SSDlite sets it).
    channels_last_by_default = False

    def __init__(
        self,
        trunk: nn.Module,
        num_classes: int,
        aspect_ratios: list[list[float]],
        scales: list[float],
        steps: list[float] | None = None,
        variances: tuple[float, float] = (0.1, 0.2),
        loss: MultiBoxLoss | None = None,
        score_threshold: float = 0.01,
        top_k_per_class: int = 200,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        head: nn.Module | None = None,
        clip_default_boxes: str = "corners",
        channels_last: bool = False,
    ):
        super().__init__()
        self.trunk = trunk
        self.num_classes = num_classes
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.scales = list(scales)
        self.steps = list(steps) if steps is not None else None
        self.variances = tuple(variances)
        self.head = head or SSDHead(trunk.out_channels, boxes_per_location(aspect_ratios), num_classes)
        self.clip_default_boxes = clip_default_boxes
        # channels_last: weights and inputs in NHWC, where oneDNN has fast depthwise convolutions (the
        # default NCHW layout sends them to a slow generic kernel; docs/benchmarks.md, CPU fast paths).
        # Converted here; forward converts the input.
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # Without the switch, NHWC inputs still on a CPU in training steps and in fold_batchnorm's inference
        # copy: oneDNN's convolutions and max pools are faster on them there (docs/benchmarks.md, CPU fast
        # paths). Plain inference keeps NCHW: its numbers are those of the
        # tests against torchvision's SSD, and the other order of summation moves them by float rounding.
        # (The switch: DetectionModel.nhwc_inference.)
        self.loss = loss or MultiBoxLoss(variances)
        self.score_threshold = score_threshold
        self.top_k_per_class = top_k_per_class
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self._priors: dict[tuple, torch.Tensor] = {}  # per (map sizes, input size, device): not state

    def priors(self, maps: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """Default boxes [A, 4] xyxy in the input tensor's pixels, on its device and in its dtype (float32
        under autocast too: autocast casts only inside ops; float64 for a float64 model) (cached)."""
        height, width = images.shape[-2:]
        map_sizes = tuple(tuple(x.shape[-2:]) for x in maps)
        key = (map_sizes, height, width, images.device, images.dtype)
        if key not in self._priors:
            normalized = cached_default_boxes(
                map_sizes, self.scales, self.aspect_ratios, self.steps, (height, width) if self.steps else None,
                self.clip_default_boxes,
            )
            pixels = normalized * torch.tensor([width, height, width, height], dtype=torch.float32)
            self._priors[key] = pixels.to(images.device, images.dtype)
        return self._priors[key]

    def forward(
        self, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[dict] | None = None
    ) -> dict[str, torch.Tensor]:
        if self.channels_last or (images.device.type == "cpu" and (self.training or self.nhwc_inference)):
            images = images.contiguous(memory_format=torch.channels_last)
        maps = self.trunk(images)
        cls_logits, box_regression = self.head(maps)
        priors = self.priors(maps, images)
        if targets is not None:
            return self.loss(cls_logits, box_regression, priors, targets)
        return {"cls_logits": cls_logits, "box_regression": box_regression, "priors": priors}

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        self.loss.class_weights = weights

    reference_box_name = "default boxes"
    reference_box_keys = "model.ssd.min_scale / first_scale / max_scale, model.ssd.aspect_ratios, input.size"

    def reference_boxes(self, height: int, width: int) -> tuple[torch.Tensor, float]:
        """The default boxes and the matching IoU (ssd.iou_thresh); see DetectionModel."""
        maps = self._map_shapes(self.trunk, height, width)
        return self.priors(maps, torch.empty(0, 0, height, width)), self.loss.iou_thresh

    @torch.no_grad()
    def postprocess(
        self, outputs: dict[str, torch.Tensor], image_sizes: torch.Tensor, scales: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return postprocess_detections(
            outputs["cls_logits"],
            outputs["box_regression"],
            outputs["priors"],
            image_sizes.to(outputs["priors"].device),
            scales.to(outputs["priors"].device),
            score_threshold=self.score_threshold,
            top_k=self.top_k_per_class,
            nms_thresh=self.nms_thresh,
            detections_per_img=self.detections_per_img,
            variances=self.variances,
        )

    @staticmethod
    def make_head(in_channels: list[int], boxes_per_cell: list[int], num_classes: int) -> nn.Module:
        """The prediction head for the trunk's maps (SSDlite's separable one: ssdlite.py)."""
        return SSDHead(in_channels, boxes_per_cell, num_classes)

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
                    class_names: list[str] | None = None) -> "SSD":
        return build_ssd(model_cfg, input_cfg, num_classes, class_names, family=cls)


def build_ssd(model_cfg: ModelConfig, input_cfg: InputConfig, num_classes: int,
              class_names: list[str] | None = None, family: type[SSD] = SSD) -> SSD:
    """An SSD of `family` (SSD, or ssdlite.SSDLite with its depthwise-separable head) from the config:
    trunk `model.backbone`, `model.ssd` settings, square `input.size` input. `model.pretrained` may name
    a whole detector's weights (coco, or a torchvision / our state dict or a detect checkpoint:
    weights.py maps them onto ours); `class_names` (the C foreground names, when known) decide which
    classification rows are carried over. The trunk is then built as from random weights (every stage
    trains unless model.trainable_layers says otherwise) and loaded with the rest.
    """
    from detect.models import weights

    ssd_cfg = model_cfg.ssd
    if input_cfg.resize != "fixed":
        raise ConfigError(f"input.resize: SSD needs 'fixed' (every image input.size square), got '{input_cfg.resize}'")
    num_maps = len(ssd_cfg.aspect_ratios)
    detector_weights = weights.read_detector_weights(model_cfg.pretrained, model_cfg.arch, model_cfg.backbone)
    trunk_pretrained, reduced_tail = model_cfg.pretrained, ssd_cfg.reduced_tail
    if detector_weights is not None:
        trunk_pretrained = "none"  # the whole detector's weights come after
        if reduced_tail is None and model_cfg.backbone in weights.MOBILENET_V3_FULL_TAIL:
            reduced_tail = weights.ssdlite_has_reduced_tail(detector_weights.state_dict, model_cfg.backbone)
    trunk = build_ssd_trunk(
        model_cfg.backbone, num_maps, input_cfg.size, trunk_pretrained, model_cfg.trainable_layers, reduced_tail
    )
    sizes = [size for size, _ in trunk.feature_map_sizes(input_cfg.size)]
    if ssd_cfg.feature_maps is not None and list(ssd_cfg.feature_maps) != sizes:
        raise ConfigError(
            f"model.ssd.feature_maps: {ssd_cfg.feature_maps} does not match the {model_cfg.backbone} trunk's "
            f"maps at input.size {input_cfg.size}: {sizes}"
        )
    if ssd_cfg.steps is not None and len(ssd_cfg.steps) != num_maps:
        raise ConfigError(f"model.ssd.steps: {len(ssd_cfg.steps)} values for {num_maps} feature maps")
    loss = MultiBoxLoss(
        ssd_cfg.variances, ssd_cfg.iou_thresh, ssd_cfg.neg_pos_ratio, ssd_cfg.empty_image_negatives,
        focal=(ssd_cfg.focal_gamma, ssd_cfg.focal_alpha) if ssd_cfg.cls_loss == "focal" else None,
    )
    model = family(
        trunk,
        num_classes,
        ssd_cfg.aspect_ratios,
        box_scales(num_maps, ssd_cfg.min_scale, ssd_cfg.max_scale, ssd_cfg.first_scale, ssd_cfg.last_scale),
        steps=ssd_cfg.steps,
        variances=ssd_cfg.variances,
        loss=loss,
        score_threshold=ssd_cfg.score_threshold,
        top_k_per_class=ssd_cfg.top_k_per_class,
        nms_thresh=ssd_cfg.nms_thresh,
        detections_per_img=ssd_cfg.detections_per_img,
        head=family.make_head(trunk.out_channels, boxes_per_location(ssd_cfg.aspect_ratios), num_classes),
        clip_default_boxes=ssd_cfg.clip_default_boxes,
        channels_last=family.channels_last_by_default,
    )
    if detector_weights is not None:
        weights.load_detector_weights(model, detector_weights, class_names)
    return model
