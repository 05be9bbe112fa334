"""Typed configuration: YAML files, one level of `base:` inheritance, `--set a.b=c` overrides.

`load_config(name_or_path, overrides)` returns a validated `Config`. A name such as `voc_faster_rcnn`
is looked up among the YAML files shipped in `detect/configs/`; a path to a YAML file works too.
Every section rejects unknown keys; errors name the key, the file it came from, and what is allowed.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detect.errors import ConfigError


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Section):
    """How the synthetic dataset is generated when `data.format: synthetic` and `data.root` is empty."""

    num_images: int = Field(200, ge=1)
    image_size: int = Field(320, ge=32)
    seed: int = 0
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)


class DataConfig(Section):
    format: Literal["voc", "coco", "synthetic"] = "synthetic"
    root: str = "data/shapes"
    train_split: str = "train"
    val_split: str = "val"
    # Foreground class names in label order (label 1 is the first). None: take them from the data.
    classes: list[str] | None = None
    # COCO only: the image folder, when it is not `root/<split>/`.
    image_dir: str | None = None
    # Train on objects marked difficult (VOC); evaluation always ignores them.
    use_difficult: bool = False
    # An object whose class is not in `classes`: stop, or skip that object.
    unknown_class: Literal["raise", "skip"] = "raise"
    # A bad sample (unreadable image, malformed annotation): stop, or skip it and count it.
    on_error: Literal["raise", "skip"] = "raise"
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = True
    persistent_workers: bool = True
    # Batch images of similar aspect ratio together (less padding for keep-ratio resizing).
    aspect_ratio_grouping: bool = False
    synth: SynthConfig = SynthConfig()


class InputConfig(Section):
    """How images become the model's input: resize, pad, normalise (the eval pipeline is exactly this)."""

    # keep_ratio: shorter side `min_size`, longer side at most `max_size` (Faster R-CNN).
    # fixed: every image resized to `size` x `size` (SSD).
    resize: Literal["keep_ratio", "fixed"] = "keep_ratio"
    min_size: int = Field(600, ge=16)
    max_size: int = Field(1000, ge=16)
    size: int = Field(300, ge=16)
    # Batches are padded so that both sides are multiples of this.
    size_divisible: int = Field(32, ge=1)
    # ImageNet mean and std on 0..1 pixel values (torchvision's classification weights use these).
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class TransformSpec(BaseModel):
    """One named augmentation: `{name: horizontal_flip, p: 0.5, ...parameters}`."""

    model_config = ConfigDict(extra="allow")

    name: str
    p: float = Field(1.0, ge=0.0, le=1.0)

    def params(self) -> dict[str, Any]:
        """The transform's own parameters (everything but `name` and `p`)."""
        return dict(self.model_extra or {})


class AugmentConfig(Section):
    """Training augmentations, in order, before the resize and normalisation of `input`."""

    train: list[TransformSpec] = Field(default_factory=lambda: [TransformSpec(name="horizontal_flip", p=0.5)])
    # Boxes keeping less than this fraction of their area after a transform are dropped.
    min_visibility: float = Field(0.3, ge=0.0, le=1.0)
    # Boxes smaller than this many pixels of area after a transform are dropped.
    min_area: float = Field(1.0, ge=0.0)


class AnchorConfig(Section):
    # Defaults from the Faster R-CNN paper (Ren et al., 2015): 3 scales x 3 ratios at stride 16.
    sizes: list[float] = [128.0, 256.0, 512.0]
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]


class RPNConfig(Section):
    conv_channels: int | None = None  # None: the backbone's out_channels
    fg_iou_thresh: float = Field(0.7, ge=0.0, le=1.0)
    bg_iou_thresh: float = Field(0.3, ge=0.0, le=1.0)
    batch_size_per_image: int = Field(256, ge=1)
    positive_fraction: float = Field(0.5, gt=0.0, le=1.0)
    pre_nms_top_n_train: int = Field(12000, ge=1)
    pre_nms_top_n_test: int = Field(6000, ge=1)
    post_nms_top_n_train: int = Field(2000, ge=1)
    post_nms_top_n_test: int = Field(300, ge=1)
    nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    min_box_size: float = Field(1.0, ge=0.0)  # proposals smaller than this (pixels) are dropped
    loss_box_weight: float = 1.0


class RoIHeadsConfig(Section):
    batch_size_per_image: int = Field(512, ge=1)
    positive_fraction: float = Field(0.25, gt=0.0, le=1.0)
    fg_iou_thresh: float = Field(0.5, ge=0.0, le=1.0)
    bg_iou_thresh_hi: float = Field(0.5, ge=0.0, le=1.0)
    bg_iou_thresh_lo: float = Field(0.0, ge=0.0, le=1.0)
    # Target normalisation: deltas are multiplied by these (1/0.1, 1/0.1, 1/0.2, 1/0.2).
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    representation_size: int = Field(4096, ge=1)  # fc6/fc7 width for VGG
    score_thresh: float = Field(0.05, ge=0.0, le=1.0)
    nms_thresh: float = Field(0.3, ge=0.0, le=1.0)
    detections_per_img: int = Field(100, ge=1)
    loss_box_weight: float = 1.0


class SSDConfig(Section):
    # Defaults from the SSD paper (Liu et al., 2016) for SSD300: 6 feature maps, 8,732 default boxes.
    # Sizes of the feature maps; None: read off the trunk for `input.size` (given: checked against it).
    feature_maps: list[int] | None = None
    steps: list[int] | None = None  # None: input size / feature map size
    min_scale: float = Field(0.2, gt=0.0, le=1.0)
    max_scale: float = Field(0.9, gt=0.0, le=1.0)
    # Scale of the first map (conv4_3); the paper uses 0.1 on VOC (0.07 on COCO).
    first_scale: float | None = 0.1
    # One list per feature map (so its length is the number of maps: 6 SSD300, 7 SSD512); each ratio
    # a adds boxes a:1 and 1:a to the two square boxes.
    aspect_ratios: list[list[float]] = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]
    variances: tuple[float, float] = (0.1, 0.2)
    iou_thresh: float = Field(0.5, ge=0.0, le=1.0)
    neg_pos_ratio: float = Field(3.0, gt=0.0)
    # Hard negatives mined in an image without ground truth (no positives to count 3:1 from).
    empty_image_negatives: int = Field(24, ge=0)
    score_thresh: float = Field(0.01, ge=0.0, le=1.0)
    top_k_per_class: int = Field(200, ge=1)
    nms_thresh: float = Field(0.45, ge=0.0, le=1.0)
    detections_per_img: int = Field(200, ge=1)


class ModelConfig(Section):
    arch: Literal["faster_rcnn", "ssd"] = "faster_rcnn"
    backbone: str = "vgg16"
    # none | imagenet | path to a local torchvision classification state dict
    pretrained: str = "none"
    # How many backbone stages train (the rest are frozen); None: the backbone's default.
    trainable_layers: int | None = None
    roi_pool: Literal["roi_pool", "roi_align"] = "roi_pool"
    roi_output_size: int | None = None  # None: 7 for VGG, 14 for ResNet (then res5)
    anchors: AnchorConfig = AnchorConfig()
    rpn: RPNConfig = RPNConfig()
    roi_heads: RoIHeadsConfig = RoIHeadsConfig()
    ssd: SSDConfig = SSDConfig()

    @field_validator("pretrained")
    @classmethod
    def _pretrained_word_or_path(cls, value: str) -> str:
        return value.strip()


class TrainConfig(Section):
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(8, ge=1)
    # Learning rate for the whole batch (not per image).
    lr: float = Field(0.01, gt=0.0)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0)
    # Apply weight decay to normalisation layers and biases too (off by default).
    decay_norm_and_bias: bool = False
    backbone_lr_mult: float = Field(1.0, ge=0.0)
    scheduler: Literal["multistep", "step", "cosine", "constant"] = "multistep"
    milestones: list[int] = [8, 11]  # epochs, for multistep
    step_size: int = Field(1, ge=1)  # epochs, for step
    gamma: float = Field(0.1, gt=0.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)  # cosine floor, as a fraction of lr
    warmup_iters: int = Field(500, ge=0)
    warmup_factor: float = Field(0.001, gt=0.0, le=1.0)
    clip_grad_norm: float | None = None
    accumulate: int = Field(1, ge=1)
    # Mixed precision on CUDA (ignored on CPU): bf16 autocast, or fp16 with a gradient scaler.
    amp: bool = True
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    ema: bool = False
    ema_decay: float = Field(0.9998, gt=0.0, lt=1.0)
    seed: int = 0
    deterministic: bool = False
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    eval_every: int = Field(1, ge=0)  # epochs; 0: only at the end
    log_every: int = Field(20, ge=1)  # steps
    # A non-finite loss: stop the run, or skip that step and count it.
    nonfinite: Literal["stop", "skip"] = "stop"
    output_dir: str = "runs"


class EvalConfig(Section):
    metric: Literal["voc07", "voc12", "coco", "all"] = "voc07"
    batch_size: int = Field(8, ge=1)
    iou_thresh: float = Field(0.5, gt=0.0, lt=1.0)


class Config(Section):
    """The whole resolved configuration; saved inside every checkpoint."""

    name: str = "config"
    data: DataConfig = DataConfig()
    input: InputConfig = InputConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


# ---------------------------------------------------------------------------------------------------
# Loading


def builtin_config_dir() -> Path:
    """The folder of YAML configs shipped inside the package."""
    return Path(str(resources.files("detect") / "configs"))


def builtin_config_names() -> list[str]:
    return sorted(p.stem for p in builtin_config_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A config name (`voc_faster_rcnn`) or a path to a YAML file -> the file's path."""
    candidates = [Path(name_or_path)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name_or_path)
    for candidate in candidates:
        for path in (candidate, candidate.with_name(candidate.name + ".yaml")):
            if path.is_file() and path.suffix in (".yaml", ".yml"):
                return path
    builtin = builtin_config_dir() / f"{Path(name_or_path).stem}.yaml"
    if builtin.is_file() and "/" not in name_or_path:
        return builtin
    names = builtin_config_names()
    close = difflib.get_close_matches(Path(name_or_path).stem, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"config '{name_or_path}' not found: not a YAML file, nor a built-in config{hint}; "
        f"built-in: {', '.join(names)}"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict, override: dict, sources: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`, recording in `sources` where each key came from."""
    merged = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, sources, source, prefix=f"{path}.")
        else:
            merged[key] = value
            _record_sources(value, path, sources, source)
    return merged


def _record_sources(value: Any, path: str, sources: dict, source: str) -> None:
    sources[path] = source
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_sources(sub, f"{path}.{key}", sources, source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (['a', 'b'], value parsed as YAML, so `[x,y]`, `1e-3`, `true`, `null` work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{text}': expected key.sub=value, e.g. --set train.epochs=20")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _nest(keys: list[str], value: Any) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a config by name or path, apply its `base:` and the `--set` overrides, and validate."""
    raw, sources = load_raw_config(name_or_path)
    for text in overrides:
        keys, value = parse_override(text)
        raw = _merge(raw, _nest(keys, value), sources, f"--set {text}")
    raw.setdefault("name", Path(str(name_or_path)).stem)
    return validate_config(raw, sources)


def load_raw_config(name_or_path: str) -> tuple[dict, dict[str, str]]:
    """The merged but unvalidated mapping, and for each dotted key the file it came from."""
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    sources: dict[str, str] = {}
    base_name = data.pop("base", None)
    merged: dict = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise ConfigError(f"{path}: 'base' must be a config name or path, got {base_name!r}")
        base_path = resolve_config_path(base_name, relative_to=path.parent)
        base_data = _read_yaml(base_path)
        if "base" in base_data:
            raise ConfigError(
                f"{base_path}: has its own 'base:' but only one level of inheritance is allowed "
                f"(used as base of {path})"
            )
        merged = _merge({}, base_data, sources, str(base_path))
    merged = _merge(merged, data, sources, str(path))
    return merged, sources


def validate_config(raw: dict, sources: dict[str, str] | None = None) -> Config:
    """Validate a mapping; the first problem becomes a one-line ConfigError."""
    sources = sources or {}
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error.errors()[0], sources)) from None


def _describe(problem: dict, sources: dict[str, str]) -> str:
    loc = [str(part) for part in problem["loc"]]
    key = ".".join(loc)
    source = _source_of(loc, sources)
    where = f" in {source}" if source else ""
    if problem["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
        return f"unknown key '{key}'{where}{hint} (allowed: {', '.join(allowed)})"
    value = problem.get("input")
    message = problem["msg"]
    if problem["type"] == "literal_error":
        message = "must be one of " + message.removeprefix("Input should be ")
    return f"bad value for '{key}'{where}: {value!r}: {message}"


def _source_of(loc: list[str], sources: dict[str, str]) -> str | None:
    for end in range(len(loc), 0, -1):
        source = sources.get(".".join(loc[:end]))
        if source:
            return source
    return None


def _allowed_keys(section_loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section_loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def config_to_dict(config: Config) -> dict:
    """Plain, YAML-safe mapping of a config (what `config show` prints and checkpoints store)."""
    return config.model_dump(mode="json")


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
