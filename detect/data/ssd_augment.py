"""The SSD paper's augmentations (Liu et al., 2016, section 2.2 and the "zoom out" trick of section 3.6)
written as albumentations transforms, so they compose with the library's own under one `BboxParams`.

albumentations has no IoU-constrained crop of the SSD kind (RandomSizedBBoxSafeCrop keeps every box
instead), no zoom-out filled with the mean, and no photometric distortion in the SSD's random order, so
these three are ours. They draw their randomness from `self.py_random`, which `Compose.set_random_seed`
seeds: that keeps DataLoader workers apart and runs reproducible.

Boxes reach `apply_to_bboxes` in albumentations' internal format: float [N, 4 + extra] with x_min,
y_min, x_max, y_max normalized to 0..1 by the image's width and height; extra columns carry labels.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops.transforms import BaseCrop


class PhotometricDistort(A.ImageOnlyTransform):
    """SSD photometric distortions on uint8 RGB: each of brightness, contrast, saturation, hue and a
    channel-order shuffle is applied with probability 1/2; contrast comes either first or last (chosen
    at random), as in the SSD reference implementation.

    Brightness and contrast are one lookup table each (fast on uint8); saturation and hue go through
    OpenCV's HSV (hue in 0..179 there, so `hue_delta` is in degrees and halved).
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18.0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        if not 0 <= brightness_delta <= 255:
            raise ValueError(f"brightness_delta must be in 0..255, got {brightness_delta}")
        if not 0 <= hue_delta <= 180:
            raise ValueError(f"hue_delta must be in 0..180 degrees, got {hue_delta}")
        for name, (low, high) in (("contrast_range", contrast_range), ("saturation_range", saturation_range)):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high, got {[low, high]}")
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = float(hue_delta)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rnd = self.py_random
        coin = lambda: rnd.random() < 0.5  # noqa: E731
        order = list(range(3))
        rnd.shuffle(order)
        return {
            "brightness": rnd.uniform(-self.brightness_delta, self.brightness_delta) if coin() else 0.0,
            "contrast": rnd.uniform(*self.contrast_range) if coin() else 1.0,
            "contrast_first": coin(),
            "saturation": rnd.uniform(*self.saturation_range) if coin() else 1.0,
            "hue": rnd.uniform(-self.hue_delta, self.hue_delta) if coin() else 0.0,
            "channel_order": order if coin() else [0, 1, 2],
        }

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8:
            raise TypeError("PhotometricDistort expects a uint8 image")
        # Brightness then (optionally) contrast are both affine in the pixel value: one LUT.
        contrast_first = params["contrast_first"]
        gain = params["contrast"] if contrast_first else 1.0
        img = _affine_lut(img, gain, params["brightness"] * gain)
        img = _saturation_hue(img, params["saturation"], params["hue"])
        if not contrast_first:
            img = _affine_lut(img, params["contrast"], 0.0)
        if params["channel_order"] != [0, 1, 2]:
            img = np.ascontiguousarray(img[..., params["channel_order"]])
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


def _affine_lut(img: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """value -> clip(value * gain + offset) through a 256-entry table; a no-op skips the work."""
    if gain == 1.0 and offset == 0.0:
        return img
    table = np.clip(np.arange(256, dtype=np.float32) * gain + offset, 0, 255).round().astype(np.uint8)
    return cv2.LUT(img, table)


def _saturation_hue(img: np.ndarray, saturation: float, hue_degrees: float) -> np.ndarray:
    """Hue shift and saturation gain in OpenCV's HSV: one 3-channel table pass (H, S, V unchanged)."""
    if saturation == 1.0 and hue_degrees == 0.0:
        return img
    values = np.arange(256)
    hue_table = (values + round(hue_degrees / 2)) % 180
    sat_table = np.clip(values * saturation, 0, 255).round()
    table = np.stack([hue_table, sat_table, values], axis=1).astype(np.uint8).reshape(256, 1, 3)
    hsv = cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class Expand(A.DualTransform):
    """Zoom out: place the image at a random spot on a canvas `ratio` times its size (ratio uniform in
    [1, max_ratio]) filled with `fill` (the dataset mean, in 0..255), so objects become smaller."""

    def __init__(self, max_ratio: float = 4.0, fill: tuple[float, float, float] = (124, 116, 104), p: float = 0.5):
        super().__init__(p=p)
        if not max_ratio >= 1.0:
            raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
        self.max_ratio = float(max_ratio)
        self.fill = tuple(float(v) for v in fill)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(1.0, self.max_ratio)
        out_h, out_w = int(height * ratio), int(width * ratio)
        top = self.py_random.randint(0, out_h - height)
        left = self.py_random.randint(0, out_w - width)
        return {"canvas": (out_h, out_w), "offset": (top, left), "in_shape": (height, width)}

    def apply(self, img: np.ndarray, canvas=(0, 0), offset=(0, 0), **params: Any) -> np.ndarray:
        (out_h, out_w), (top, left) = canvas, offset
        height, width = img.shape[:2]
        # copyMakeBorder fills the margin in one pass (faster than allocating and pasting).
        return cv2.copyMakeBorder(
            img, top, out_h - height - top, left, out_w - width - left, cv2.BORDER_CONSTANT,
            value=self.fill[: img.shape[2]] if img.ndim == 3 else self.fill[0],
        )

    def apply_to_bboxes(self, bboxes: np.ndarray, canvas=(0, 0), offset=(0, 0), in_shape=(0, 0), **params):
        (out_h, out_w), (top, left), (height, width) = canvas, offset, in_shape
        out = bboxes.copy()
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * width + left) / out_w
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * height + top) / out_h
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_ratio", "fill")


class IoURandomCrop(BaseCrop):
    """The SSD crop: pick a minimum IoU from `min_ious` (None: keep the whole image); try up to
    `max_trials` patches of side `min_scale`..1 of the image and aspect ratio (w/h) within
    `aspect_range`; accept the first whose IoU with some box is at least that minimum and that holds
    at least one box centre. Boxes whose centre falls outside the patch are dropped (the paper's rule);
    the rest are clipped to it. An image without boxes gets an unconstrained patch. When no trial
    succeeds, the image is left whole.
    """

    def __init__(
        self,
        min_ious: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9),
        min_scale: float = 0.3,
        aspect_range: tuple[float, float] = (0.5, 2.0),
        max_trials: int = 50,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not min_ious:
            raise ValueError("min_ious must list at least one value (null keeps the whole image)")
        for value in min_ious:
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"min_ious values must be null or in 0..1, got {value}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if not 0.0 < aspect_range[0] <= aspect_range[1]:
            raise ValueError(f"aspect_range must be [low, high] with 0 < low <= high, got {list(aspect_range)}")
        if max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {max_trials}")
        self.min_ious = tuple(min_ious)
        self.min_scale = float(min_scale)
        self.aspect_range = (float(aspect_range[0]), float(aspect_range[1]))
        self.max_trials = int(max_trials)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = (0, 0, width, height)
        min_iou = self.py_random.choice(self.min_ious)
        if min_iou is None:
            return {"crop_coords": whole}
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float64)
        boxes = bboxes[:, :4] * np.array([width, height, width, height])
        # All trials at once (numpy) rather than one Python iteration each; the first trial that
        # passes is taken, so the accepted patch has the same distribution as with a loop.
        patches = self._sample_patches(height, width)
        if len(boxes):
            overlaps = _iou_with_patches(boxes, patches).max(axis=1) >= min_iou
            passes = overlaps & _centres_inside_patches(boxes, patches)
            patches = patches[passes]
        if len(patches) == 0:
            return {"crop_coords": whole}
        return {"crop_coords": tuple(int(v) for v in patches[0])}

    def _sample_patches(self, height: int, width: int) -> np.ndarray:
        """`max_trials` random patches [T, 4] (x0, y0, x1, y1) ints, those of a bad aspect ratio left out."""
        rng, trials = self.random_generator, self.max_trials
        crop_w = rng.uniform(self.min_scale, 1.0, trials) * width
        crop_h = rng.uniform(self.min_scale, 1.0, trials) * height
        aspect_ok = (crop_w / crop_h >= self.aspect_range[0]) & (crop_w / crop_h <= self.aspect_range[1])
        crop_w = np.maximum(1, crop_w[aspect_ok].astype(np.int64))
        crop_h = np.maximum(1, crop_h[aspect_ok].astype(np.int64))
        left = rng.integers(0, width - crop_w + 1)
        top = rng.integers(0, height - crop_h + 1)
        return np.stack([left, top, left + crop_w, top + crop_h], axis=1)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords=(0, 0, 0, 0), **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        if len(bboxes) and tuple(crop_coords) != (0, 0, width, height):
            boxes = bboxes[:, :4] * np.array([width, height, width, height])
            bboxes = bboxes[_centres_inside(boxes, crop_coords)]
        return super().apply_to_bboxes(bboxes, crop_coords=crop_coords, **params)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "min_scale", "aspect_range", "max_trials")


def _iou_with_patches(boxes: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """IoU of each patch [T, 4] with each box [N, 4] (pixels, xyxy) -> [T, N]."""
    p = patches[:, None, :].astype(np.float64)
    inter_w = (np.minimum(boxes[:, 2], p[..., 2]) - np.maximum(boxes[:, 0], p[..., 0])).clip(min=0)
    inter_h = (np.minimum(boxes[:, 3], p[..., 3]) - np.maximum(boxes[:, 1], p[..., 1])).clip(min=0)
    inter = inter_w * inter_h
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    patch_areas = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    return inter / (box_areas + patch_areas - inter)


def _centres_inside_patches(boxes: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """[T]: whether patch t holds the centre of at least one box."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    p = patches[:, None, :]
    return ((cx > p[..., 0]) & (cx < p[..., 2]) & (cy > p[..., 1]) & (cy < p[..., 3])).any(axis=1)


def _centres_inside(boxes: np.ndarray, patch: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = patch
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)


class ExpandThenCrop(A.DualTransform):
    """`Expand` followed by `IoURandomCrop` as one step, with the same parameters, randomness and
    result (pixel for pixel), but without building the zoomed-out canvas: only the crop window is
    made, from the part of the image inside it plus the fill around it. The canvas is up to
    `max_ratio`^2 (16) times the image's area; the window is on average well under half of it.
    `build_transforms` puts this in place of the pair wherever a config lists them in this order.
    """

    def __init__(self, expand: Expand, crop: IoURandomCrop) -> None:
        self.expand, self.crop = expand, crop  # first: the base __init__ seeds them through set_random_seed
        super().__init__(p=1.0)

    def set_random_state(self, random_generator, py_random) -> None:
        super().set_random_state(random_generator, py_random)
        self.expand.set_random_state(random_generator, py_random)
        self.crop.set_random_state(random_generator, py_random)

    def set_random_seed(self, seed) -> None:
        super().set_random_seed(seed)
        self.expand.set_random_state(self.random_generator, self.py_random)
        self.crop.set_random_state(self.random_generator, self.py_random)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        expand = {"canvas": (height, width), "offset": (0, 0), "in_shape": (height, width)}
        bboxes = data.get("bboxes", np.zeros((0, 4)))
        if self.expand.should_apply():
            expand = self.expand.get_params_dependent_on_data(params, data)
            if len(bboxes):
                bboxes = self.expand.apply_to_bboxes(np.asarray(bboxes), **expand)
        canvas_h, canvas_w = expand["canvas"]
        crop = {"crop_coords": (0, 0, canvas_w, canvas_h)}
        if self.crop.should_apply():
            crop_params = {**params, "shape": (canvas_h, canvas_w)}
            crop = self.crop.get_params_dependent_on_data(crop_params, {**data, "bboxes": bboxes})
        return {**expand, **crop}

    def apply(self, img: np.ndarray, canvas=(0, 0), offset=(0, 0), crop_coords=(0, 0, 0, 0), **params: Any):
        (top, left), (x0, y0, x1, y1) = offset, crop_coords
        height, width = img.shape[:2]
        # The window in the image's own coordinates, and how far it reaches past each side.
        wx0, wy0, wx1, wy1 = x0 - left, y0 - top, x1 - left, y1 - top
        pad_top, pad_left = max(0, -wy0), max(0, -wx0)
        pad_bottom, pad_right = max(0, wy1 - height), max(0, wx1 - width)
        inside = img[_clamp(wy0, height) : _clamp(wy1, height), _clamp(wx0, width) : _clamp(wx1, width)]
        fill = self.expand.fill[: img.shape[2]] if img.ndim == 3 else self.expand.fill[0]
        if inside.size == 0:  # a window on the fill alone (possible for an image without boxes)
            return np.full((y1 - y0, x1 - x0, *img.shape[2:]), fill, dtype=img.dtype)
        if pad_top == pad_left == pad_bottom == pad_right == 0:
            return np.ascontiguousarray(inside)
        return cv2.copyMakeBorder(inside, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT, value=fill)

    def apply_to_bboxes(self, bboxes: np.ndarray, canvas=(0, 0), offset=(0, 0), in_shape=(0, 0),
                        crop_coords=(0, 0, 0, 0), **params: Any) -> np.ndarray:
        bboxes = self.expand.apply_to_bboxes(bboxes, canvas=canvas, offset=offset, in_shape=in_shape)
        return self.crop.apply_to_bboxes(bboxes, crop_coords=crop_coords, **{**params, "shape": canvas})

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("expand", "crop")


def _clamp(value: int, limit: int) -> int:
    """`value` limited to 0..limit (a negative slice bound would count from the end)."""
    return min(max(value, 0), limit)
