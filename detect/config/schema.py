"""The typed configuration: one pydantic model per section, each rejecting unknown keys, with every
key's meaning in the docstring under its field (docs/config.md is generated from them). The `model`
sections are in model_sections.py, the base of every section in section.py.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from detect.config.model_sections import FasterRCNNModelConfig, ModelConfig
from detect.config.section import Section, all_positive
from detect.metric_names import MetricName

# The largest image side a config may ask for: beyond it a typo (an extra zero) would only show as an
# out-of-memory error deep inside the first step.
MAX_IMAGE_SIDE = 8192


# The default of data.max_pixels, and of `--max-pixels` in `detect infer` and `detect serve`: about
# 8000 x 5000. A decoded image costs 3 bytes a pixel, and about twice that while it is converted.
DEFAULT_MAX_PIXELS = 40_000_000


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

    format: Literal["voc", "coco", "yolo", "synthetic"] = "synthetic"
    """Dataset format: Pascal VOC XML, COCO JSON, YOLO text labels (Ultralytics' data.yaml), or the
    generated synthetic shapes."""
    root: str = "data/shapes"
    """Dataset folder (see docs/data.md for the layouts); for yolo, the data.yaml file or its folder."""
    train_split: str = "train"
    """Training split: VOC `trainval` or `VOC2007/trainval+VOC2012/trainval`; COCO `train2017`; YOLO a key of
    data.yaml (`train`)."""
    val_split: str = "val"
    """Validation split, evaluated during training and by `detect eval`; with val_fraction or split_lists, the
    name of the part drawn from the training split."""
    val_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    """For data without a validation split: this share of the training split's images becomes the validation
    part (seeded by split_seed, stratified so that each class of 2 or more images is in both parts). A run
    writes the lists it drew into its folder (splits/) and records them in split_lists. null: the splits
    are read as the dataset has them."""
    split_seed: int = 0
    """Seed of the val_fraction draw: the same data and seed give the same parts."""
    split_lists: str | None = None
    """A folder with train.txt and val.txt (image ids, one per line) choosing the parts of the training split,
    as `detect data split` or a run with val_fraction writes them; null: drawn with val_fraction."""
    classes: list[str] | None = None
    """Foreground class names in label order (label 1 is the first). None: take them from the data."""
    annotations: str | dict[str, str] | None = None
    """COCO only: the annotation file, once (a path) or per split (`{train: a.json, val: b.json}`); null:
    `root/annotations/instances_<split>.json`, else `root/<split>/_annotations.coco.json` (Roboflow's), else
    the one .json file in `root/<split>/`."""
    image_dir: str | dict[str, str] | None = None
    """COCO only: the image folder, once or per split; null: the annotation file's folder when it is not
    `root/annotations/`, else `root/<split>/`."""
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
    repeat_factor_threshold: float | None = Field(None, gt=0.0, le=1.0)
    """Class imbalance: draw training images of rare classes more often per epoch. A class in a share f of the
    images below this threshold t repeats its images sqrt(t / f) times (LVIS's rule; an image takes its rarest
    class's factor); null: every image once. LVIS uses 0.001; for a handful of classes, about 0.5 to 1."""
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

    @model_validator(mode="after")
    def _drawn_part_named_apart(self) -> "DataConfig":
        if (self.val_fraction is not None or self.split_lists is not None) and self.val_split == self.train_split:
            raise ValueError(f"val_split and train_split are both '{self.train_split}': with val_fraction or "
                             f"split_lists the validation part is drawn from the training split and needs its own "
                             f"name (e.g. val)")
        return self


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
        return all_positive(std, "std")

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


class TrainConfig(Section):
    """Optimiser, schedule, precision and the training loop."""

    epochs: int = Field(12, ge=1)
    """Passes over the training split."""
    time_minutes: float | None = Field(None, gt=0)
    """A wall-clock budget for the run, in minutes (`detect train --time`): the run ends within it with its best
    model, `epochs` and `eval_every` fitted to it from the measured speed of the first steps and the cost of
    validation (detect/engine/time_budget.py); a resumed run keeps the schedule fitted. null: `epochs`."""
    batch_size: int = Field(8, ge=1)
    """Images per step (per process under torchrun)."""
    lr: float = Field(0.01, gt=0.0)
    """Learning rate for the whole batch (not per image)."""
    base_batch_size: int | None = Field(None, ge=1)
    """The total batch `lr` is tuned for: images per optimiser step over all processes. null: batch_size x
    accumulate on one process (the lr then scales only with the number of processes)."""
    scale_lr: bool = True
    """Scale `lr` linearly with the total batch (batch_size x accumulate x processes) / base_batch_size (the
    linear scaling rule of Goyal et al., 2017); the effective lr is logged at the start of a run."""
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
    class_weights: Literal["none", "auto"] | list[float] = "none"
    """Class imbalance: weights of the classification loss per foreground class, in label order (background
    keeps 1). auto: 1 / sqrt(boxes of the class in the training split), scaled to a mean of 1; none: all 1."""

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights_usable(cls, weights):
        """A list of weights: finite numbers of 0 or more, not all 0 (the loss would learn no class)."""
        if not isinstance(weights, (list, tuple)):
            return weights
        for position, weight in enumerate(weights, start=1):
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"weight {position} is {weight!r}, not a number")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight {position} is {weight}; each weight is a finite number of 0 or more")
        if weights and not any(weights):
            raise ValueError("every weight is 0, so no class would be learned; give at least one weight above 0 "
                             "(or none, or auto)")
        return weights
    patience: int | None = Field(None, ge=1)
    """Early stopping: end the run once this many epochs have passed since the best validation mAP (best.pt
    holds that model); null: train all epochs. A run stopped so is not trained on by `--resume` unless
    patience (or the epochs) grow."""
    loggers: list[Literal["tensorboard", "csv", "mlflow"]] = ["tensorboard", "csv"]
    """Where a run's numbers go besides train.log and metrics.jsonl: TensorBoard events; csv, results.csv and
    curves.png in the run folder after every epoch; mlflow, an MLflow run (MLFLOW_TRACKING_URI, else a local
    mlruns/ folder; `pip install 'detect[mlflow]'`)."""
    log_every: int = Field(20, ge=1)
    """Write a training log line every this many optimiser steps."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A non-finite loss: stop the run, or skip that step and count it."""
    output_dir: str = "runs"
    """Run folders go to `<output_dir>/<config name>/<timestamp>/`."""


class EvalConfig(Section):
    """Validation during training and `detect eval`."""

    metric: MetricName = "voc07"
    """Metric for validation and `detect eval`: voc07 (11-point), voc12 (all-point), coco, or all."""
    batch_size: int = Field(8, ge=1)
    """Images per batch during evaluation."""
    iou_thresh: float = Field(0.5, gt=0.0, lt=1.0)
    """IoU threshold of the VOC metrics."""
    coco_backend: Literal["numpy", "pycocotools"] = "numpy"
    """What computes the COCO metric: numpy (detect/evaluation/coco_eval.py: pycocotools' numbers, about
    18x faster on a COCO-val-sized set, docs/evaluation.md) or pycocotools itself (the reference)."""


class TrackConfig(Section):
    """Tracking in videos (`detect infer --track`): ByteTrack's association rules and defaults (Zhang et al.,
    2022), see detect/track/bytetrack.py."""

    tracker: str = "bytetrack"
    """The tracker (registered in detect/track/registry.py): bytetrack, the one written here."""
    high_score: float = Field(0.5, gt=0.0, le=1.0)
    """Detections at least this confident are matched first and may start tracks."""
    low_score: float = Field(0.1, ge=0.0, le=1.0)
    """Detections from this score up to high_score only keep existing tracks alive (a partly hidden object)."""
    new_track_score: float = Field(0.6, gt=0.0, le=1.0)
    """An unmatched detection at least this confident starts a track."""
    match_iou: float = Field(0.2, ge=0.0, le=1.0)
    """The least IoU of a track's predicted box and a confident detection to match them."""
    low_match_iou: float = Field(0.5, ge=0.0, le=1.0)
    """The least IoU to match a track with an unsure detection."""
    tentative_match_iou: float = Field(0.3, ge=0.0, le=1.0)
    """The least IoU to confirm a track seen once with its second detection."""
    duplicate_iou: float = Field(0.35, gt=0.0, le=1.0)
    """A detection overlapping a more confident one (any class) this much is a duplicate: it takes no track
    (1: keep all). 0.35 was chosen on synthetic clips of seeds 1 to 10 (tools/bench_tracking.py --seed N):
    mean MOTA 0.779 and IDF1 0.842, against 0.756 and 0.830 at 0.5, 0.781 and 0.839 at 0.3."""
    appearance_weight: float = Field(1.0, ge=0.0)
    """Weigh a colour-histogram distance (detect/track/appearance.py) against IoU when confident detections
    are matched to tracks; 0: boxes alone (ByteTrack). 1 was chosen on synthetic clips of seeds 1 to 10
    (tools/bench_tracking.py --seed N), with appearance_overlap_iou 0.1: mean IDF1 0.842, against 0.839 at
    0.5, 0.841 at 2 and 0.821 with boxes alone."""
    appearance_overlap_iou: float = Field(0.1, ge=0.0, le=1.0)
    """A track's colour histogram learns only from detections that overlap no other box (another confident
    detection, another track's predicted box) at a higher IoU: where two shapes overlap, the middle of a box
    may show the other one, and a histogram that learned it follows the wrong shape when they part. 1: learn
    from every match. On seeds 1 to 10, any value from 0 to 0.3 gave mean IDF1 0.842, against 0.832 at 1."""
    max_appearance_distance: float = Field(1.0, ge=0.0, le=1.0)
    """With appearance_weight above 0: a track and a detection whose histograms differ more are never
    matched (1: no limit)."""
    per_class: bool = False
    """Match a detection only with tracks of its own class. false (ByteTrack's way): any class, and a track
    takes the class its detections mostly name, so a detector that wavers between two classes does not
    break the track."""
    lost_buffer: int = Field(30, ge=0)
    """Frames a track may go unseen (occluded, missed) and still take up its id again."""
    trail: int = Field(20, ge=0)
    """Frames of each track's past centres drawn in the output video (0: none)."""

    @model_validator(mode="after")
    def _low_below_high(self) -> "TrackConfig":
        if self.low_score > self.high_score:
            raise ValueError(f"track.low_score ({self.low_score}) is above track.high_score ({self.high_score})")
        return self


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
    track: TrackConfig = TrackConfig()
