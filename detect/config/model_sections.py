"""The `model` section, one per detector family: the keys every detector has (_ModelSection), then
Faster R-CNN's anchors, RPN and RoI head, or SSD's default boxes, loss and postprocess. `ModelConfig`
is their union, chosen by `model.arch`; a config holds the sections of its own detector only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from detect.config.section import Section, all_positive


class AnchorConfig(Section):
    """Faster R-CNN anchors. Defaults from the Faster R-CNN paper (Ren et al., 2015): 3 sizes x 3 ratios at
    stride 16."""

    sizes: list[float] | list[list[float]] = [128.0, 256.0, 512.0]
    """Anchor sides in pixels (square-equivalent), at every feature-map location. Feature pyramids take
    one entry per level: a size (that level's only one), or a list of sizes (all of them on that level,
    the same count on every level)."""
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]
    """Anchor height / width ratios; k = len(sizes) * len(aspect_ratios) anchors per location (with one
    size per pyramid level: len(aspect_ratios) or sizes per level x len(aspect_ratios))."""

    @field_validator("sizes", "aspect_ratios")
    @classmethod
    def _positive(cls, values: list, info: ValidationInfo) -> list:
        if not values or any(isinstance(item, list) and not item for item in values):
            raise ValueError("must list at least one value (and one per pyramid level)")
        return all_positive(values, info.field_name)

    @field_validator("sizes")
    @classmethod
    def _same_count_per_level(cls, sizes: list) -> list:
        # The RPN head is shared by the levels: it predicts the same number of anchors on each.
        counts = {len(item) for item in sizes if isinstance(item, list)}
        if len(counts) > 1:
            raise ValueError(f"every pyramid level needs the same number of anchor sizes, got {sorted(counts)}")
        return sizes


class RPNConfig(Section):
    """Faster R-CNN region proposal network: anchor matching, sampling and proposals."""

    conv_channels: int | None = None
    """Channels of the RPN 3x3 conv; null: the backbone's out_channels."""
    fg_iou_thresh: float = Field(0.7, ge=0.0, le=1.0)
    """Anchors with IoU >= this with a ground-truth box are positive."""
    bg_iou_thresh: float = Field(0.3, ge=0.0, le=1.0)
    """Anchors whose best IoU is below this are negative (between: ignored)."""
    batch_size_per_image: int = Field(256, ge=1)
    """Anchors sampled per image for the RPN loss."""
    positive_fraction: float = Field(0.5, gt=0.0, le=1.0)
    """Largest share of positives among the sampled anchors."""
    pre_nms_top_n_train: int = Field(12000, ge=1)
    """Proposals kept per image before NMS, training."""
    pre_nms_top_n_test: int = Field(6000, ge=1)
    """Proposals kept per image before NMS, inference."""
    post_nms_top_n_train: int = Field(2000, ge=1)
    """Proposals kept per image after NMS, training."""
    post_nms_top_n_test: int = Field(300, ge=1)
    """Proposals kept per image after NMS, inference."""
    nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    """IoU threshold of the proposal NMS."""
    min_box_size: float = Field(1.0, ge=0.0)
    """Proposals with a side smaller than this (pixels) are dropped."""
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    """Proposals whose objectness probability (sigmoid of the logit) is below this are dropped before
    NMS (0: none; torchvision's MobileNetV3 FPN detectors use 0.05)."""
    loss_box_weight: float = Field(1.0, ge=0.0)
    """Weight of the RPN box regression loss."""

    @model_validator(mode="after")
    def _bg_not_above_fg(self) -> "RPNConfig":
        if self.bg_iou_thresh > self.fg_iou_thresh:
            raise ValueError(
                f"rpn.bg_iou_thresh ({self.bg_iou_thresh}) is above rpn.fg_iou_thresh ({self.fg_iou_thresh})")
        return self


class RoIHeadsConfig(Section):
    """Faster R-CNN box head: RoI sampling, box regression and postprocess."""

    batch_size_per_image: int = Field(512, ge=1)
    """RoIs sampled per image for the box head loss."""
    positive_fraction: float = Field(0.25, gt=0.0, le=1.0)
    """Largest share of foreground RoIs among those sampled."""
    fg_iou_thresh: float = Field(0.5, ge=0.0, le=1.0)
    """RoIs with IoU >= this with a ground-truth box are foreground."""
    bg_iou_thresh_hi: float = Field(0.5, ge=0.0, le=1.0)
    """RoIs with best IoU below this (and at least `bg_iou_thresh_lo`) are background."""
    bg_iou_thresh_lo: float = Field(0.0, ge=0.0, le=1.0)
    """Lower IoU bound of background RoIs."""
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    """Target normalization: regression deltas are multiplied by these (1/0.1, 1/0.1, 1/0.2, 1/0.2)."""
    representation_size: int = Field(4096, ge=1)
    """Width of the fc6/fc7 box head (VGG)."""
    score_threshold: float = Field(0.05, ge=0.0, le=1.0)
    """Detections scoring below this are dropped in postprocess."""
    nms_thresh: float = Field(0.3, ge=0.0, le=1.0)
    """IoU threshold of the class-wise NMS in postprocess (0.3 in VOC configs)."""
    detections_per_img: int = Field(100, ge=1)
    """At most this many detections per image."""
    loss_box_weight: float = Field(1.0, ge=0.0)
    """Weight of the box head's regression loss."""

    @field_validator("box_weights")
    @classmethod
    def _box_weights_positive(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        return all_positive(weights, "box weight")

    @model_validator(mode="after")
    def _background_range(self) -> "RoIHeadsConfig":
        if self.bg_iou_thresh_lo > self.bg_iou_thresh_hi:
            raise ValueError(f"roi_heads.bg_iou_thresh_lo ({self.bg_iou_thresh_lo}) is above "
                             f"roi_heads.bg_iou_thresh_hi ({self.bg_iou_thresh_hi})")
        return self


class SSDConfig(Section):
    """SSD default boxes, loss and postprocess. Defaults from the SSD paper (Liu et al., 2016) for SSD300:
    6 feature maps, 8,732 default boxes."""

    feature_maps: list[int] | None = None
    """Sizes of the feature maps; null: read off the trunk for `input.size` (given: checked against it)."""
    steps: list[int] | None = None
    """Default-box centre steps in pixels per map; null: input size / map size."""
    min_scale: float = Field(0.2, gt=0.0, le=1.0)
    """Default-box scale of the second map (as a fraction of the input side)."""
    max_scale: float = Field(0.9, gt=0.0, le=1.0)
    """Default-box scale of the last map."""
    first_scale: float | None = Field(0.1, gt=0.0, le=1.0)
    """Scale of the first map (conv4_3); the paper uses 0.1 on VOC (0.07 on COCO)."""
    last_scale: float | None = None
    """Scale s_{m+1} that sizes the last map's extra square box; null: one more step of the linear spread
    (Caffe SSD). torchvision's SSDlite uses 1.0."""
    clip_default_boxes: Literal["corners", "size"] = "corners"
    """corners: clip each default box to the image (Caffe SSD); size: clamp widths and heights to the image
    side and keep the centres, so edge boxes may reach outside (torchvision's DefaultBoxGenerator)."""
    reduced_tail: bool | None = None
    """MobileNetV3 SSD trunks: halve the channels of the last stage (MobileNetV3 paper, table 6); null: when
    `model.pretrained` is none (ImageNet weights have the full tail), as torchvision's SSDlite, and with a
    whole detector's weights as they were made (torchvision's COCO SSDlite has the reduced tail)."""
    aspect_ratios: list[list[float]] = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]
    """One list per feature map (so its length is the number of maps: 6 SSD300, 7 SSD512); each ratio a adds
    boxes a:1 and 1:a to the two square boxes."""
    variances: tuple[float, float] = (0.1, 0.2)
    """Box encoding variances for centre and size."""
    iou_thresh: float = Field(0.5, ge=0.0, le=1.0)
    """Default boxes with IoU >= this with a ground truth are positive (and each ground truth's best)."""
    cls_loss: Literal["hard_negatives", "focal"] = "hard_negatives"
    """Classification loss: cross-entropy over the positives and the hardest negatives (neg_pos_ratio, the SSD
    paper), or the focal loss over every default box (Lin et al., 2017, "Focal Loss for Dense Object
    Detection"), which down-weights the easy ones instead of leaving them out."""
    focal_gamma: float = Field(2.0, ge=0.0)
    """focal: the focusing exponent (2 in the paper)."""
    focal_alpha: float = Field(0.25, gt=0.0, lt=1.0)
    """focal: the weight of foreground boxes (background: 1 - alpha; 0.25 in the paper)."""
    neg_pos_ratio: float = Field(3.0, gt=0.0)
    """Hard negatives kept per positive in the confidence loss."""
    empty_image_negatives: int = Field(24, ge=0)
    """Hard negatives mined in an image without ground truth (no positives to count 3:1 from)."""
    score_threshold: float = Field(0.01, ge=0.0, le=1.0)
    """Per-class score threshold in postprocess."""
    top_k_per_class: int = Field(200, ge=1)
    """Candidates per class kept before NMS."""
    nms_thresh: float = Field(0.45, ge=0.0, le=1.0)
    """IoU threshold of the per-class NMS."""
    detections_per_img: int = Field(200, ge=1)
    """At most this many detections per image."""

    @field_validator("feature_maps", "steps", "aspect_ratios", "variances")
    @classmethod
    def _positive(cls, values, info: ValidationInfo):
        return values if values is None else all_positive(values, f"ssd.{info.field_name} value")

    @model_validator(mode="after")
    def _scales_increase(self) -> "SSDConfig":
        if self.min_scale > self.max_scale:
            raise ValueError(f"ssd.min_scale ({self.min_scale}) is above ssd.max_scale ({self.max_scale})")
        return self


class _ModelSection(Section):
    """What every detector's `model` section holds; each architecture adds its own sections."""

    arch: str = "faster_rcnn"
    """Detector: `faster_rcnn` (two-stage), `ssd` (one-stage), or `ssdlite` (SSD with depthwise-separable
    prediction heads). A config holds the sections of its own detector only."""
    backbone: str = "vgg16"
    """vgg16, vgg16_bn, resnet18, resnet34, resnet50, resnet101, mobilenet_v3_large, mobilenet_v3_small,
    tiny_resnet (a narrow ResNet for CPU training from random weights); resnet18_fpn .. resnet101_fpn,
    mobilenet_v3_large_fpn, mobilenet_v3_large_320_fpn (feature pyramids, Faster R-CNN only: anchor sizes
    per level, roi_align; the two MobileNet names build the same network and differ in which COCO
    checkpoint `pretrained: coco` loads). SSD takes vgg16, the four ResNets, the two MobileNetV3s and
    tiny_resnet (detect/models/backbones/)."""
    pretrained: str = "none"
    """Where the weights start: `none` (random); `imagenet` (the trunk's torchvision classification
    weights); `coco` (torchvision's COCO-trained detector of the same architecture: Faster R-CNN on
    resnet50_fpn, mobilenet_v3_large_fpn, mobilenet_v3_large_320_fpn; SSD on vgg16 with 6 maps, i.e.
    SSD300; SSDlite on mobilenet_v3_large); or the path of a torchvision classification
    state dict (the trunk), a torchvision detection state dict or a detect checkpoint (the whole
    detector; the classifier's rows kept by class name)."""
    trainable_layers: int | None = None
    """How many backbone stages train, counted from the top (the rest are frozen); None: every stage from
    random weights, every stage but the lowest with loaded weights (detect/models/backbones/freezing.py)."""

    @field_validator("pretrained")
    @classmethod
    def _pretrained_word_or_path(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="before")
    @classmethod
    def _no_other_detectors_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            foreign = [key for key in data if key not in cls.model_fields and key in ALL_MODEL_KEYS]
            if foreign:
                arch = data.get("arch", cls.model_fields["arch"].default)
                raise PydanticCustomError(
                    "other_detectors_key", "not a setting of model.arch {arch} (its keys: {keys})",
                    {"key": foreign[0], "arch": arch, "keys": ", ".join(cls.model_fields)})
        return data


class FasterRCNNModelConfig(_ModelSection):
    """The detector and its backbone, for `model.arch: faster_rcnn`: anchors, RPN and RoI head."""

    arch: Literal["faster_rcnn"] = "faster_rcnn"
    roi_pool: Literal["roi_pool", "roi_align"] = "roi_pool"
    """RoI pooling: torchvision's roi_pool or roi_align."""
    roi_output_size: int | None = None
    """None: 7 for VGG, 14 for ResNet (then res5)"""
    anchors: AnchorConfig = AnchorConfig()
    rpn: RPNConfig = RPNConfig()
    roi_heads: RoIHeadsConfig = RoIHeadsConfig()


class SSDModelConfig(_ModelSection):
    """The detector and its backbone, for `model.arch: ssd` and `ssdlite`: default boxes, loss, postprocess."""

    arch: Literal["ssd", "ssdlite"] = "ssd"
    ssd: SSDConfig = SSDConfig()


# model.arch -> the section that holds its settings.
MODEL_SECTIONS: dict[str, type[_ModelSection]] = {
    "faster_rcnn": FasterRCNNModelConfig, "ssd": SSDModelConfig, "ssdlite": SSDModelConfig}
ALL_MODEL_KEYS = {key for section in MODEL_SECTIONS.values() for key in section.model_fields}


def _model_family(value: Any) -> str:
    """The union member for a `model` mapping or section: the class name of its arch's section (a missing
    arch is Faster R-CNN's default; an unknown one is refused by the discriminator, listing the arches)."""
    arch = value.get("arch", "faster_rcnn") if isinstance(value, dict) else getattr(value, "arch", None)
    section = MODEL_SECTIONS.get(arch)
    return section.__name__ if section is not None else str(arch)


ModelConfig = Annotated[
    Union[Annotated[FasterRCNNModelConfig, Tag("FasterRCNNModelConfig")],
          Annotated[SSDModelConfig, Tag("SSDModelConfig")]],
    Discriminator(_model_family, custom_error_type="unknown_arch",
                  custom_error_message=f"must be one of {', '.join(MODEL_SECTIONS)}"),
]
"""The `model` section: FasterRCNNModelConfig or SSDModelConfig, chosen by `arch`."""


def model_section(raw: dict) -> FasterRCNNModelConfig | SSDModelConfig:
    """A `model` mapping validated as the section of its `arch` (Faster R-CNN's when it names none)."""
    return TypeAdapter(ModelConfig).validate_python(raw)
