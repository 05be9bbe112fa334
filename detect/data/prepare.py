"""The last step of every pipeline: resize as `input` says, then either normalize into a CHW float
tensor (`input.normalize_on: loader`) or keep the uint8 pixels in CHW order (`device`, the default: the
consumer normalizes the batch on its device, see normalize.py).

    prepare = ResizeNormalize(input_cfg)
    out = prepare(image=image, bboxes=boxes, box_index=box_index)
        in:   image uint8 RGB numpy [h, w, 3]; bboxes float [N, 4] xyxy pixels of `image`;
              box_index int [N] (the rows of the raw target the boxes came from)
        out:  {image: uint8 tensor [3, H, W] (normalize_on device) or float32 tensor [3, H, W]
               ((pixel / 255 - mean) / std, normalize_on loader), bboxes float32 [M, 4] xyxy pixels
               of the resized image, box_index int64 [M]}

Why not an albumentations Compose: this step runs on every item of every epoch, and a Compose spends
more time on its box bookkeeping (format checks, normalized boxes, filtering) than the resize takes on
a 300 x 300 image; and A.Normalize followed by an HWC -> CHW copy makes two float passes over the
largest image of the pipeline (600 x 1000 for Faster R-CNN). Here the boxes are scaled in one numpy
op, and the normalization is one 256-entry float table per channel (cv2.LUT) written straight into
the CHW output: exact, as the input has only 256 values per channel. The result matches the former
`A.Compose([ResizeTo, A.Normalize])` (same cv2.resize call; values within float32 rounding).

Boxes are clipped to the image and those left without area dropped (what `BboxParams(clip=True,
filter_invalid_bboxes=True)` did here); the augmentations before have already applied
`min_visibility` and `min_area`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from detect.config import InputConfig


def resized_shape(height: int, width: int, mode: str, min_size: int, max_size: int, size: int) -> tuple[int, int]:
    """(h, w) after resizing: keep_ratio scales the shorter side to `min_size` unless the longer side
    would then exceed `max_size` (then the longer side is `max_size`); fixed gives `size` x `size`."""
    if mode == "fixed":
        return size, size
    factor = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (h, w); the image itself when it already has that size."""
    if tuple(image.shape[:2]) == tuple(out_shape):
        return image
    return cv2.resize(image, (out_shape[1], out_shape[0]), interpolation=cv2.INTER_LINEAR)


def normalization_tables(mean, std) -> list[np.ndarray]:
    """Per channel, the normalized value of each of the 256 pixel values: float32 [256] x 3."""
    return [((np.arange(256) / 255.0 - m) / s).astype(np.float32) for m, s in zip(mean, std)]


def normalize_to_chw(image: np.ndarray, mean, std, tables: list[np.ndarray] | None = None) -> torch.Tensor:
    """uint8 [h, w, 3] -> float32 tensor [3, h, w] of (pixel / 255 - mean) / std, one table look-up
    pass per channel (`tables` from normalization_tables); other dtypes take the plain arithmetic."""
    if image.dtype != np.uint8:
        chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
        chw = (chw - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
        return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))
    tables = tables or normalization_tables(mean, std)
    out = np.empty((3, *image.shape[:2]), np.float32)
    for channel, plane in enumerate(cv2.split(image)):
        cv2.LUT(plane, tables[channel], dst=out[channel])
    return torch.from_numpy(out)


def uint8_to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 [h, w, 3] -> uint8 tensor [3, h, w] (the pixels, channel planes one after another)."""
    return torch.from_numpy(np.stack(cv2.split(image)))


class ResizeNormalize:
    """The pipelines' final resize, and normalization unless `input.normalize_on` is device (see the
    module docstring); called like a Compose."""

    def __init__(self, input_cfg: InputConfig) -> None:
        self.mode = input_cfg.resize
        self.min_size, self.max_size, self.size = input_cfg.min_size, input_cfg.max_size, input_cfg.size
        self.mean, self.std = tuple(input_cfg.mean), tuple(input_cfg.std)
        self.normalize = input_cfg.normalize_on == "loader"
        self.tables = normalization_tables(self.mean, self.std)

    def __call__(self, image: np.ndarray, bboxes, box_index) -> dict:
        in_h, in_w = image.shape[:2]
        out_h, out_w = resized_shape(in_h, in_w, self.mode, self.min_size, self.max_size, self.size)
        boxes = np.asarray(bboxes, np.float32).reshape(-1, 4)[:, :4]
        box_index = np.asarray(box_index, np.int64).reshape(-1)
        boxes = boxes.clip(0, np.array([in_w, in_h, in_w, in_h], np.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        scale = np.array([out_w / in_w, out_h / in_h, out_w / in_w, out_h / in_h], np.float32)
        resized = resize_image(image, (out_h, out_w))
        return {
            "image": self.to_tensor(resized),
            "bboxes": boxes[keep] * scale,
            "box_index": box_index[keep],
        }

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """The resized HWC image as the batch carries it: normalized float32 or uint8, both CHW."""
        if self.normalize:
            return normalize_to_chw(image, self.mean, self.std, self.tables)
        if image.dtype != np.uint8:  # a float image would reach the model unnormalized
            raise TypeError(f"input.normalize_on=device sends uint8 pixels, but the augmentations gave "
                            f"{image.dtype}; use input.normalize_on=loader")
        return uint8_to_chw(image)
