"""The typed configuration: one pydantic model per section, each rejecting unknown keys, with every
key's meaning in the docstring under its field (docs/config.md is generated from them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The largest image side a config may ask for: beyond it a typo (an extra zero) would only show as an
# out-of-memory error deep inside the first step.
MAX_IMAGE_SIDE = 8192


def _contains_bool(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_contains_bool(item) for item in value)
    return isinstance(value, bool)


# The default of data.max_pixels, and of `--max-pixels` in `detect infer` and `detect serve`: about
# 8000 x 5000. A decoded image costs 3 bytes a pixel, and about twice that while it is converted.
DEFAULT_MAX_PIXELS = 40_000_000


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too. Numbers must
    be finite (`inf`, `.nan` and `1e400` are refused), and a boolean is not a number (`epochs: true`
    would otherwise be read as 1)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation is not bool and _contains_bool(value):
            raise ValueError("a boolean where a number or name is expected")
        return value


def _all_positive(values, key: str):
    """A list (or tuple, or list of lists) of numbers, each > 0."""
    flat = [v for item in values for v in (item if isinstance(item, (list, tuple)) else [item])]
    if any(v <= 0 for v in flat):
        raise ValueError(f"every {key} must be > 0")
    return values


class SynthConfig(Section):
    """How the synthetic dataset is generated when `data.format: synthetic` and `data.root` is empty."""

    num_images: int = Field(200, ge=1)
    """Number of images in all (train and val)."""
    image_size: int = Field(320, ge=32)
    """Side of the square images, in pixels."""
    seed: int = 0
    """Random seed: the same seed gives the same bytes."""
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of the images listed in the val split."""


class DataConfig(Section):
    """Where the dataset is, which splits and classes, and how bad samples are handled."""

    format: Literal["voc", "coco", "synthetic"] = "synthetic"
    """Dataset format: Pascal VOC XML, COCO JSON, or the generated synthetic shapes."""
    root: str = "data/shapes"
    """Dataset folder (see docs/data.md for the layouts)."""
    train_split: str = "train"
    """Training split: VOC `trainval` or `VOC2007/trainval+VOC2012/trainval`; COCO `train2017`."""
    val_split: str = "val"
    """Validation split, evaluated during training and by `detect eval`."""
    classes: list[str] | None = None
    """Foreground class names in label order (label 1 is the first). None: take them from the data."""
    image_dir: str | None = None
    """COCO only: the image folder, when it is not `root/<split>/`."""
    use_difficult: bool = False
    """Train on objects marked difficult (VOC); evaluation always ignores them."""
    unknown_class: Literal["raise", "skip"] = "raise"
    """An object whose class is not in `classes`: stop, or skip that object."""
    on_error: Literal["raise", "skip"] = "raise"
    """A bad sample (unreadable image, malformed annotation): stop, or skip it and count it."""
    max_missing_share: float = Field(0.01, ge=0.0, le=1.0)
    """A JPEG without its end-of-image marker is read with a warning naming it when at most this share
    of its pixels is missing (the decoder leaves them grey); above it, it is a bad sample."""
    max_pixels: int | None = Field(DEFAULT_MAX_PIXELS, ge=1)
    """An image whose file header declares more pixels is refused as a bad sample before it is decoded
    (a small file can declare gigabytes of pixels); null: no limit. Headers are read for JPEG, PNG, BMP,
    GIF, TIFF, WebP and PNM; with a limit, files of other formats are refused too."""
    num_workers: int | Literal["auto"] = "auto"
    """DataLoader worker processes per loader; `auto`: the CPU cores available (shared among the
    training processes of a machine), at most 8."""
    pin_memory: bool = True
    """Pin batches in page-locked memory (CUDA only)."""
    persistent_workers: bool = True
    """Keep workers alive between epochs (when num_workers > 0)."""
    aspect_ratio_grouping: bool = False
    """Batch images of similar aspect ratio together (less padding for keep-ratio resizing)."""
    synth: SynthConfig = SynthConfig()

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_count_or_auto(cls, value):
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a number of workers (0 or more) or auto, got {value!r}")
        return value
    @field_validator("classes")
    @classmethod
    def _classes_named_once(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        if not classes:
            raise ValueError("an empty class list makes a model with nothing to detect (null: take them from the data)")
        if any(not name.strip() for name in classes):
            raise ValueError("a class name is empty")
        repeated = sorted({name for name in classes if classes.count(name) > 1})
        if repeated:
            raise ValueError(f"class names must be unique; repeated: {', '.join(repeated)}")
        return classes


class InputConfig(Section):
    """How images become the model's input: resize, pad, normalize (the eval pipeline is exactly this)."""

    resize: Literal["keep_ratio", "fixed"] = "keep_ratio"
    """keep_ratio: shorter side `min_size`, longer side at most `max_size` (Faster R-CNN); fixed: every image
    resized to `size` x `size` (SSD). A config sets and shows the sizes of its own mode only."""
    min_size: int = Field(600, ge=16, le=MAX_IMAGE_SIDE)
    """keep_ratio: target of the shorter side, in pixels."""
    max_size: int = Field(1000, ge=16, le=MAX_IMAGE_SIDE)
    """keep_ratio: cap of the longer side, in pixels."""
    size: int = Field(300, ge=16, le=MAX_IMAGE_SIDE)
    """fixed: the square input side, in pixels (300 for SSD300)."""
    size_divisible: int = Field(32, ge=1, le=1024)
    """Batches are padded so that both sides are multiples of this."""
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """Per-channel mean subtracted from 0..1 RGB pixels (ImageNet's, as torchvision's weights expect)."""
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """Per-channel std that pixels are divided by after the mean."""
    normalize_on: Literal["device", "loader"] = "device"
    """Where mean / std are applied. device: the loader's workers only resize and send uint8 batches (a
    quarter of float32's bytes through shared and pinned memory), normalized after the copy to the model's
    device (detect/data/normalize.py); loader: the workers send normalized float32 batches."""

    @field_validator("std")
    @classmethod
    def _std_positive(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        return _all_positive(std, "std")

    @model_validator(mode="after")
    def _max_not_below_min(self) -> "InputConfig":
        if self.max_size < self.min_size:
            raise ValueError(f"input.max_size ({self.max_size}) is smaller than input.min_size ({self.min_size})")
        return self

    @model_serializer(mode="wrap")
    def _its_resize_keys_only(self, handler):
        # A config shows (and saves) the sizes of its own resize mode only: a fixed-size SSD has no
        # min_size / max_size, whose defaults would only mislead (detect/config/loading.py refuses them).
        shown = handler(self)
        for key in other_resize_keys(self.resize):
            shown.pop(key, None)
        return shown


# input.resize -> the size keys it reads.
RESIZE_KEYS = {"keep_ratio": ("min_size", "max_size"), "fixed": ("size",)}


def other_resize_keys(resize: str) -> list[str]:
    """The size keys of the other resize modes (those that `resize` does not read)."""
    return [key for mode, keys in RESIZE_KEYS.items() if mode != resize for key in keys]


class TransformSpec(BaseModel):
    """One named augmentation: `{name: horizontal_flip, p: 0.5, ...parameters}`."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True, allow_inf_nan=False)

    name: str
    p: float = Field(1.0, ge=0.0, le=1.0)
    """Probability of applying it."""

    def params(self) -> dict[str, Any]:
        """The transform's own parameters (everything but `name` and `p`)."""
        return dict(self.model_extra or {})


class AugmentConfig(Section):
    """Training augmentations, in order, before the resize and normalization of `input`."""

    train: list[TransformSpec] = Field(default_factory=lambda: [TransformSpec(name="horizontal_flip", p=0.5)])
    """Ordered list of named transforms, each `{name, p, ...parameters}`: horizontal_flip, random_crop,
    iou_random_crop, shift, scale, shear, rotate, brightness_contrast, photometric_distort, expand."""
    min_visibility: float = Field(0.3, ge=0.0, le=1.0)
    """Boxes keeping less than this fraction of their area after a transform are dropped."""
    min_area: float = Field(1.0, ge=0.0)
    """Boxes smaller than this many square pixels after a transform are dropped."""


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
        return _all_positive(values, info.field_name)

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
        return _all_positive(weights, "box weight")

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
        return values if values is None else _all_positive(values, f"ssd.{info.field_name} value")

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


class TrainConfig(Section):
    """Optimiser, schedule, precision and the training loop."""

    epochs: int = Field(12, ge=1)
    """Passes over the training split."""
    batch_size: int = Field(8, ge=1)
    """Images per step (per process under torchrun)."""
    lr: float = Field(0.01, gt=0.0)
    """Learning rate for the whole batch (not per image)."""
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    """sgd (with momentum), adam or adamw."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (Adam: beta1)."""
    nesterov: bool = False
    """Nesterov momentum for SGD."""
    weight_decay: float = Field(5e-4, ge=0.0)
    """L2 weight decay (decoupled for adamw)."""
    decay_norm_and_bias: bool = False
    """Apply weight decay to normalization layers and biases too (off by default)."""
    backbone_lr_mult: float = Field(1.0, ge=0.0)
    """The backbone trunk's learning rate is `lr` times this."""
    scheduler: Literal["multistep", "step", "cosine", "constant"] = "multistep"
    """Learning-rate schedule after warmup, stepped every iteration."""
    milestones: list[int] = [8, 11]
    """Epochs after which the multistep schedule multiplies the learning rate by `gamma`."""

    @field_validator("milestones")
    @classmethod
    def _milestones_not_negative(cls, milestones: list[int]) -> list[int]:
        if any(m < 0 for m in milestones):
            raise ValueError("milestones are epochs, each >= 0")
        return milestones
    step_size: int = Field(1, ge=1)
    """Epochs between two multiplications by `gamma` in the step schedule."""
    gamma: float = Field(0.1, gt=0.0)
    """Factor applied at each step / milestone."""
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """The cosine schedule's floor, as a fraction of `lr`."""
    warmup_iters: int = Field(500, ge=0)
    """Iterations of linear warmup from `warmup_factor * lr` to `lr`."""
    warmup_factor: float = Field(0.001, gt=0.0, le=1.0)
    """Starting fraction of the learning rate during warmup."""
    clip_grad_norm: float | None = Field(None, gt=0.0)
    """Clip the gradients' global norm to this; null: no clipping."""
    accumulate: int = Field(1, ge=1)
    """Accumulate gradients over this many batches per optimiser step."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU): bf16 autocast, or fp16 with a gradient scaler."""
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    """Autocast type on CUDA: bf16, or fp16 with a gradient scaler."""
    ema: bool = False
    """Keep an exponential moving average of the weights, used for evaluation and saved."""
    ema_decay: float = Field(0.9998, gt=0.0, lt=1.0)
    """Decay of the weight average."""
    seed: int = 0
    """Random seed for weights, sampling and augmentation."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower)."""
    channels_last: bool = False
    """Run the model in channels_last memory format (faster convolutions on CUDA, and with oneDNN on
    the CPU)."""
    compile: bool = False
    """Compile the model with torch.compile."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm under torchrun."""
    eval_every: int = Field(1, ge=0)
    """Evaluate every this many epochs; 0: only at the end."""
    log_every: int = Field(20, ge=1)
    """Write a training log line every this many optimiser steps."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A non-finite loss: stop the run, or skip that step and count it."""
    output_dir: str = "runs"
    """Run folders go to `<output_dir>/<config name>/<timestamp>/`."""


class EvalConfig(Section):
    """Validation during training and `detect eval`."""

    metric: Literal["voc07", "voc12", "coco", "all"] = "voc07"
    """Metric for validation and `detect eval`: voc07 (11-point), voc12 (all-point), coco, or all."""
    batch_size: int = Field(8, ge=1)
    """Images per batch during evaluation."""
    iou_thresh: float = Field(0.5, gt=0.0, lt=1.0)
    """IoU threshold of the VOC metrics."""


class Config(Section):
    """The whole resolved configuration; saved inside every checkpoint."""

    name: str = "config"
    """Name of the config (the file's stem); names the run folder."""
    data: DataConfig = DataConfig()
    input: InputConfig = InputConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = FasterRCNNModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
