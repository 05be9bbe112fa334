"""What a split holds, seen at the model's input size: for `detect data stats`.

Only annotations and image headers are read (no pixels). Boxes are scaled as the eval pipeline
resizes their image (prepare.resized_shape), so their sizes are the ones the model sees.

    boxes = split_boxes(dataset, input_cfg) -> SplitBoxes
        labels int64 [N], boxes float32 [N, 4] xyxy at the input size, image_index int [N],
        crowd bool [N], input_sizes [(padded h, padded w)] per image, images_per_class int [C]
    size_buckets(boxes) -> int [N]: 0 small, 1 medium, 2 large (COCO's areas: 32^2, 96^2 at input size)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.data.dataset import DetectionDataset
from detect.data.loader import round_up
from detect.data.prepare import resized_shape

SIZE_NAMES = ("small", "medium", "large")
SIZE_LIMITS = (32**2, 96**2)  # COCO's area ranges (cocodataset.org/#detection-eval), at the input size


@dataclass
class SplitBoxes:
    split: str
    class_names: list[str]
    num_images: int
    images_per_class: np.ndarray  # int [C]
    labels: np.ndarray  # int64 [N], 1..C
    boxes: np.ndarray  # float32 [N, 4] xyxy, at the input size
    image_index: np.ndarray  # int [N]
    crowd: np.ndarray  # bool [N]
    input_sizes: list[tuple[int, int]]  # per image: the padded input (h, w)

    def boxes_per_image(self, keep: np.ndarray | None = None) -> list[np.ndarray]:
        """[float32 [Ni, 4], ...] one per image, of the boxes `keep` (bool [N]) selects."""
        keep = np.ones(len(self.labels), bool) if keep is None else keep
        return [self.boxes[keep & (self.image_index == i)] for i in range(self.num_images)]


def split_boxes(dataset: DetectionDataset, input_cfg, split: str) -> SplitBoxes:
    """Every box of the dataset at the input size (see the module docstring)."""
    labels, boxes, image_index, crowd, input_sizes = [], [], [], [], []
    images_per_class = np.zeros(len(dataset.class_names), np.int64)
    for index, sample in enumerate(dataset.samples):
        height, width = sample.image_size()
        out_h, out_w = resized_shape(height, width, input_cfg.resize, input_cfg.min_size, input_cfg.max_size,
                                     input_cfg.size)
        input_sizes.append((round_up(out_h, input_cfg.size_divisible), round_up(out_w, input_cfg.size_divisible)))
        scale = np.array([out_w / width, out_h / height] * 2, np.float32)
        boxes.append(np.asarray(sample.boxes, np.float32).reshape(-1, 4) * scale)
        labels.append(np.asarray(sample.labels, np.int64))
        crowd.append(np.asarray(sample.iscrowd, bool))
        image_index.append(np.full(len(sample.labels), index))
        for label in set(int(label) for label in sample.labels):
            images_per_class[label - 1] += 1
    return SplitBoxes(split, list(dataset.class_names), len(dataset.samples), images_per_class,
                      _concat(labels, (0,), np.int64), _concat(boxes, (0, 4), np.float32),
                      _concat(image_index, (0,), np.int64), _concat(crowd, (0,), bool), input_sizes)


def size_buckets(boxes: np.ndarray) -> np.ndarray:
    """int [N]: 0 small, 1 medium, 2 large by area (at the input size)."""
    return np.searchsorted(np.array(SIZE_LIMITS), box_areas(boxes), side="right")


def box_areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def aspect_ratios(boxes: np.ndarray) -> np.ndarray:
    """height / width of each box (the convention of model.anchors.aspect_ratios)."""
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 1e-6, None)
    return np.clip(boxes[:, 3] - boxes[:, 1], 0, None) / widths


def _concat(parts: list[np.ndarray], empty_shape: tuple, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty_shape, dtype)
