"""Augmentation and input preparation: raw dataset items -> the model's input, with albumentations.

    transform = build_transforms(input_cfg, augment_cfg, train=True)
    image, target = transform(raw_image, raw_target)

    in:   image uint8 RGB numpy [H, W, 3]; target {boxes float32 [N, 4] xyxy (original pixels),
          labels int64 [N], difficult bool [N], iscrowd bool [N], image_id, orig_size (h, w)}
    out:  image uint8 tensor [3, h, w] (input.normalize_on device, the default), or float32 tensor
          [3, h, w] normalized with input.mean / input.std (normalize_on loader);
          target {boxes float32 [M, 4] xyxy in the resized image's pixels, labels int64 [M],
                  difficult bool [M], iscrowd bool [M] (the rows of the M boxes kept),
                  image_id (unchanged), orig_size int64 [2] (h, w of the raw image),
                  image_size int64 [2] (h, w after resize), scale float32 [2] (sx, sy)}

The training pipeline is `augment.train` (an ordered list of named transforms, see TRANSFORMS) under
one `A.BboxParams` (boxes leaving the image are clipped; boxes keeping less than `min_visibility` of
their area, or under `min_area` pixels, are dropped with their labels and flags), then the resize and
normalization of `input` (the normalization there only with `normalize_on: loader`; otherwise it
happens on the device, see normalize.py). The eval pipeline is the resize and normalization alone, so
it is deterministic. `scale` is the resize's factor: the image entering the resize times `scale` is the
output. For the eval pipeline that image is the raw one, so `boxes / scale` maps predictions back to
the original pixels; after training augmentations (crops, zoom-out) there is no such map, nor need.
"""

from __future__ import annotations

import inspect
import random
from typing import Any, Callable

import albumentations as A
import numpy as np
import torch

from detect.config import AugmentConfig, InputConfig, TransformSpec
from detect.data.prepare import ResizeNormalize, resize_image, resized_shape
from detect.data.ssd_augment import Expand, ExpandThenCrop, IoURandomCrop, PhotometricDistort
from detect.errors import ConfigError

# ---------------------------------------------------------------------------------------------------
# Resize: shared by the `resize` transform and the final step of both pipelines.


class ResizeTo(A.DualTransform):
    """Resize as `resized_shape` says. Boxes need no change: albumentations holds them normalized."""

    def __init__(
        self, mode: str = "keep_ratio", min_size: int = 600, max_size: int = 1000, size: int = 300, p: float = 1.0):
        super().__init__(p=p)
        if mode not in ("keep_ratio", "fixed"):
            raise ValueError(f"mode must be keep_ratio or fixed, got '{mode}'")
        if min(min_size, max_size, size) < 1:
            raise ValueError("min_size, max_size and size must be positive")
        self.mode, self.min_size, self.max_size, self.size = mode, int(min_size), int(max_size), int(size)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        return {"out_shape": resized_shape(height, width, self.mode, self.min_size, self.max_size, self.size)}

    def apply(self, img: np.ndarray, out_shape=(1, 1), **params: Any) -> np.ndarray:
        return resize_image(img, out_shape)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mode", "min_size", "max_size", "size")


# ---------------------------------------------------------------------------------------------------
# The registry: name -> builder(input_cfg, p, **params) -> an albumentations transform.
# Builders' keyword arguments are the parameters a config may give; their defaults are ours.


def _fill(input_cfg: InputConfig) -> tuple[float, float, float]:
    """The dataset mean in 0..255: what uncovered pixels are filled with (zero after normalization)."""
    return tuple(round(255 * m) for m in input_cfg.mean)


def horizontal_flip(input_cfg: InputConfig, p: float):
    return A.HorizontalFlip(p=p)


def random_crop(input_cfg: InputConfig, p: float, erosion_rate: float = 0.0):
    """A random crop that keeps every box whole (erosion_rate > 0 lets it cut into their union)."""
    return A.BBoxSafeRandomCrop(erosion_rate=erosion_rate, p=p)


def iou_random_crop(input_cfg: InputConfig, p: float, min_ious=(None, 0.1, 0.3, 0.5, 0.7, 0.9),
                    min_scale: float = 0.3, aspect_range=(0.5, 2.0), max_trials: int = 50):
    """The SSD crop (see ssd_augment.IoURandomCrop); `min_ious` entries may be null (whole image)."""
    return IoURandomCrop(min_ious=tuple(min_ious), min_scale=min_scale, aspect_range=tuple(aspect_range),
                         max_trials=max_trials, p=p)


def shift(input_cfg: InputConfig, p: float, limit: float = 0.1):
    """Translate by up to `limit` of the width / height in each direction."""
    return A.Affine(translate_percent=(-limit, limit), fill=_fill(input_cfg), p=p)


def scale(input_cfg: InputConfig, p: float, limits=(0.8, 1.2)):
    """Zoom about the centre by a factor drawn from `limits`, keeping the image size."""
    return A.Affine(scale=tuple(limits), keep_ratio=True, fill=_fill(input_cfg), p=p)


def shear(input_cfg: InputConfig, p: float, degrees: float = 10.0):
    return A.Affine(shear=(-degrees, degrees), fill=_fill(input_cfg), p=p)


def rotate(input_cfg: InputConfig, p: float, degrees: float = 10.0):
    """Boxes become the box around the rotated corners (albumentations' `largest_box`)."""
    return A.Affine(rotate=(-degrees, degrees), rotate_method="largest_box", fill=_fill(input_cfg), p=p)


def brightness_contrast(input_cfg: InputConfig, p: float, brightness: float = 0.2, contrast: float = 0.2):
    return A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=p)


def photometric_distort(input_cfg: InputConfig, p: float, brightness_delta: float = 32.0,
                        contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta: float = 18.0):
    return PhotometricDistort(brightness_delta=brightness_delta, contrast_range=tuple(contrast_range),
                              saturation_range=tuple(saturation_range), hue_delta=hue_delta, p=p)


def expand(input_cfg: InputConfig, p: float, max_ratio: float = 4.0):
    """Zoom out up to `max_ratio` times, the margin filled with input.mean (zero once normalized)."""
    return Expand(max_ratio=max_ratio, fill=_fill(input_cfg), p=p)


def resize(input_cfg: InputConfig, p: float, mode: str | None = None, min_size: int | None = None,
           max_size: int | None = None, size: int | None = None):
    """Resize as `input` says, or with the given values (a pre-resize inside the augmentations)."""
    return ResizeTo(
        mode=mode or input_cfg.resize,
        min_size=min_size or input_cfg.min_size,
        max_size=max_size or input_cfg.max_size,
        size=size or input_cfg.size,
        p=p,
    )


def normalize(input_cfg: InputConfig, p: float, mean=None, std=None):
    """(pixel / 255 - mean) / std per channel; float32 out. Always the last step (not for augment.train)."""
    return A.Normalize(mean=tuple(mean or input_cfg.mean), std=tuple(std or input_cfg.std), max_pixel_value=255.0, p=p)


TRANSFORMS: dict[str, Callable[..., A.BasicTransform]] = {
    "horizontal_flip": horizontal_flip,
    "random_crop": random_crop,
    "iou_random_crop": iou_random_crop,
    "shift": shift,
    "scale": scale,
    "shear": shear,
    "rotate": rotate,
    "brightness_contrast": brightness_contrast,
    "photometric_distort": photometric_distort,
    "expand": expand,
    "resize": resize,
    "normalize": normalize,
}

# Added by the pipeline itself after the augmentations; naming it in augment.train would apply it twice.
_FINAL_ONLY = {"normalize"}


def build_augmentation(spec: TransformSpec, input_cfg: InputConfig, where: str) -> A.BasicTransform:
    """One `{name, p, ...}` entry -> its albumentations transform; ConfigError naming `where` otherwise."""
    builder = TRANSFORMS.get(spec.name)
    allowed_names = sorted(set(TRANSFORMS) - _FINAL_ONLY)
    if builder is None or spec.name in _FINAL_ONLY:
        why = "is added after the augmentations from input.mean/std" if spec.name in _FINAL_ONLY else "is unknown"
        raise ConfigError(f"{where}: transform '{spec.name}' {why} (allowed: {', '.join(allowed_names)})")
    params = spec.params()
    allowed_params = [n for n in inspect.signature(builder).parameters if n not in ("input_cfg", "p")]
    unknown = sorted(set(params) - set(allowed_params))
    if unknown:
        raise ConfigError(
            f"{where} ({spec.name}): unknown parameter '{unknown[0]}' "
            f"(allowed: {', '.join(['p', *allowed_params])})"
        )
    try:
        return builder(input_cfg, spec.p, **params)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"{where} ({spec.name}): bad parameter: {message}") from None


# ---------------------------------------------------------------------------------------------------
# The pipeline


def _bbox_params(min_visibility: float = 0.0, min_area: float = 0.0) -> A.BboxParams:
    # Boxes carry their row index as the one label field: labels, difficult and iscrowd are then
    # gathered with the surviving indices, whatever a transform drops.
    return A.BboxParams(
        format="pascal_voc", label_fields=["box_index"], min_visibility=min_visibility, min_area=min_area,
        clip=True, filter_invalid_bboxes=True,
    )


class DetectionTransform:
    """Callable `(image, raw target) -> (image tensor, target)`; see the module docstring."""

    def __init__(self, augment: A.Compose | None, finish: ResizeNormalize) -> None:
        self.augment = augment
        self.finish = finish

    def set_seed(self, seed: int) -> None:
        """Reseed the random augmentations (each DataLoader worker does, see loader.py)."""
        # One stream shared by every transform: Compose.set_random_seed would give each transform its
        # own generator with the same seed, so their draws (e.g. two p=0.5 coins) would coincide.
        if self.augment is not None:
            self.augment.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray, target: dict) -> tuple[torch.Tensor, dict]:
        boxes = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)
        box_index = np.arange(len(boxes))
        orig_h, orig_w = image.shape[:2]
        if self.augment is not None:
            out = self.augment(image=image, bboxes=boxes, box_index=box_index)
            image, boxes, box_index = out["image"], out["bboxes"], out["box_index"]
        in_h, in_w = image.shape[:2]
        out = self.finish(image=image, bboxes=boxes, box_index=box_index)
        image, boxes, box_index = out["image"], out["bboxes"], np.asarray(out["box_index"], dtype=np.int64)
        out_h, out_w = image.shape[1:]
        result = {
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": _gather(target, "labels", box_index, torch.int64),
            "difficult": _gather(target, "difficult", box_index, torch.bool),
            "iscrowd": _gather(target, "iscrowd", box_index, torch.bool),
            "image_id": target.get("image_id"),
            "orig_size": torch.tensor([orig_h, orig_w], dtype=torch.int64),
            "image_size": torch.tensor([out_h, out_w], dtype=torch.int64),
            "scale": torch.tensor([out_w / in_w, out_h / in_h], dtype=torch.float32),
        }
        return image, result


def _gather(target: dict, key: str, index: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """target[key][index] as a tensor; a missing flag (no `difficult` in the raw target) is all False."""
    values = target.get(key)
    if values is None:
        if dtype is torch.bool:
            return torch.zeros(len(index), dtype=torch.bool)
        raise KeyError(f"raw target has no '{key}'")
    return torch.as_tensor(np.asarray(values)[index], dtype=dtype)


def fuse_expand_crop(steps: list[A.BasicTransform]) -> list[A.BasicTransform]:
    """`expand` directly followed by `iou_random_crop` -> one ExpandThenCrop (same result, without
    the zoomed-out canvas; see ssd_augment.py). Other steps are kept as they are."""
    fused: list[A.BasicTransform] = []
    for step in steps:
        if isinstance(step, IoURandomCrop) and fused and type(fused[-1]) is Expand:
            fused[-1] = ExpandThenCrop(fused[-1], step)
        else:
            fused.append(step)
    return fused


def build_transforms(input_cfg: InputConfig, augment_cfg: AugmentConfig, train: bool) -> DetectionTransform:
    """The training pipeline (augment.train, then resize + normalize) or the eval one (resize + normalize)."""
    augment = None
    if train and augment_cfg.train:
        steps = [
            build_augmentation(spec, input_cfg, f"augment.train[{i}]") for i, spec in enumerate(augment_cfg.train)
        ]
        augment = A.Compose(
            fuse_expand_crop(steps), bbox_params=_bbox_params(augment_cfg.min_visibility, augment_cfg.min_area))
    return DetectionTransform(augment, ResizeNormalize(input_cfg))
