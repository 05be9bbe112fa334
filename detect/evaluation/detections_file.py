"""A COCO results JSON from any detector, matched to a dataset split's images (`detect eval --detections`
scores the predictions through detect.evaluation.eval_command).

The results' `image_id` names the image: the file stem for VOC-layout data (an int matches a
numeric stem, e.g. 5 -> "000005"), the COCO image id for COCO data, or the image's file name (COCO's
`file_name` or its last part, where unique; elsewhere the file's name: what `detect infer --json`
writes). `category_id`: for VOC-layout data the class name or its 1-based index in the dataset's
`class_names`; for COCO data the COCO category id, for YOLO data its class id in data.yaml's names
(ids of categories left out by `data.classes` are dropped). A class the data does not have is an
error, or with `unknown_class="skip"` dropped and counted.

Boxes: `bbox` is [x, y, w, h] in the annotation files' own pixel convention. For VOC-layout data that
is the XML's 1-based corners (x = xmin, y = ymin, w = xmax - xmin, h = ymax - ymin), converted to the
pipeline's boxes exactly as the ground truth is (the dataset's `corners_to_xyxy`), so a results
file scores as the VOC devkit scores it; `detect infer --json` writes the same convention. For COCO
data it is COCO's own [x, y, w, h], used as is.

The dataset is duck-typed (detect/data's datasets): `class_names`, `len`, items `(image, target)`;
optionally `get_target(i)` (ground truth without reading pixels), `category_map` and `coco` (COCO data).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from detect.data.box_formats import xywh_to_xyxy
from detect.errors import DataError
from detect.evaluation.coco import read_coco_results


def dataset_ground_truths(dataset) -> list[dict]:
    """Every item's target dict, without decoding images where the dataset offers `get_target`."""
    get_target = getattr(dataset, "get_target", None)
    if get_target is not None:
        return [get_target(index) for index in range(len(dataset))]
    return [dataset[index][1] for index in range(len(dataset))]


class LabelResolver:
    """Results `category_id` -> label 1..C (0: a known category left out of the evaluation)."""

    def __init__(self, dataset, path: Path, unknown_class: str = "raise") -> None:
        self.class_names = list(dataset.class_names)
        self.category_map = getattr(dataset, "category_map", None)
        coco = getattr(dataset, "coco", None)
        self.known_category_ids = set(coco.cats) if coco is not None else set()
        self.path = path
        self.unknown_class = unknown_class
        self.skipped_unknown = 0  # entries dropped under unknown_class="skip"

    def __call__(self, category_id, index: int) -> int:
        if self.category_map is not None:
            label = int(self.category_map.category_ids_to_labels([category_id])[0]) if _is_int(category_id) else 0
            if label == 0 and category_id not in self.known_category_ids:
                return self._unknown(f"entry {index}: category_id {category_id!r:.40} is not a category of the dataset")
            return label
        if isinstance(category_id, str):
            if category_id not in self.class_names:
                return self._unknown(f"entry {index}: class '{category_id:.40}' is not in data.classes "
                                     f"({', '.join(self.class_names)})")
            return self.class_names.index(category_id) + 1
        if _is_int(category_id) and 1 <= category_id <= len(self.class_names):
            return int(category_id)
        if _is_int(category_id):
            return self._unknown(
                f"entry {index}: category_id {category_id} is not a class index 1..{len(self.class_names)}")
        raise DataError(f"{self.path}: entry {index}: category_id {category_id!r:.40} must be a class name or "
                        f"1..{len(self.class_names)}")

    def _unknown(self, problem: str) -> int:
        if self.unknown_class == "skip":
            self.skipped_unknown += 1
            return 0
        raise DataError(f"{self.path}: {problem} (--unknown-class skip leaves such entries out)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def image_lookup(image_ids: Iterable, file_names: dict | None = None) -> dict:
    """Results image id -> dataset image id: the id itself, its string, and ints for numeric stems.
    `file_names` (COCO data: image id -> file_name): the file name, and its last part where no other
    image has it, name the image too (what `detect infer --json` writes for COCO-trained models)."""
    lookup = {}
    for image_id in image_ids:
        lookup[image_id] = image_id
        if isinstance(image_id, str) and image_id.isdigit():
            lookup.setdefault(int(image_id), image_id)
    if file_names:
        base_names = [PurePosixPath(name).name for name in file_names.values()]
        for (image_id, name), base in zip(file_names.items(), base_names):
            lookup.setdefault(name, image_id)
            if base_names.count(base) == 1:
                lookup.setdefault(base, image_id)
    return lookup


def predictions_from_results(results: list[dict], image_ids: list, resolver: LabelResolver, path: Path,
                             corners_to_xyxy=None, file_names: dict | None = None) -> list[dict]:
    """COCO results entries -> per-image predictions {boxes xyxy, scores, labels}, in `image_ids` order.
    `corners_to_xyxy`: the data's annotation corners -> pipeline xyxy (VOC data), applied to each box.
    `file_names`: see image_lookup."""
    lookup = image_lookup(image_ids, file_names)
    by_image = defaultdict(list)
    for index, entry in enumerate(results):
        image_id = lookup.get(entry["image_id"])
        if image_id is None:
            example = ", ".join(repr(i) for i in image_ids[:3])
            raise DataError(
                f"{path}: entry {index}: image_id {entry['image_id']!r} is not in this split (ids such as {example})")
        label = resolver(entry["category_id"], index)
        if label > 0:
            by_image[image_id].append((entry["bbox"], float(entry["score"]), label))
    predictions = []
    for image_id in image_ids:
        entries = by_image.get(image_id, [])
        boxes = xywh_to_xyxy([e[0] for e in entries])
        if corners_to_xyxy is not None:
            boxes = corners_to_xyxy(boxes)
        predictions.append({
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "scores": np.array([e[1] for e in entries], dtype=np.float32),
            "labels": np.array([e[2] for e in entries], dtype=np.int64),
        })
    return predictions


def detections_file_predictions(path: str | Path, dataset, unknown_class: str = "raise"
                                ) -> tuple[list[dict], list[dict], int]:
    """Reads the results JSON and matches it to the dataset's images -> (per-image predictions, the
    dataset's ground truths in the same order, entries left out under unknown_class="skip")."""
    path = Path(path)
    results = read_coco_results(path)
    ground_truths = dataset_ground_truths(dataset)
    image_ids = list(dict.fromkeys(_plain(target["image_id"]) for target in ground_truths))
    resolver = LabelResolver(dataset, path, unknown_class)
    coco = getattr(dataset, "coco", None)
    if coco is not None:
        file_names = {image_id: info["file_name"] for image_id, info in coco.imgs.items()}
    else:  # YOLO data's image ids are paths: results name the images by file name (what infer --json writes)
        file_names = {sample.image_id: sample.image_path.name for sample in getattr(dataset, "samples", [])}
    predictions = predictions_from_results(results, image_ids, resolver, path,
                                           getattr(dataset, "corners_to_xyxy", None), file_names)
    by_id = dict(zip(image_ids, predictions))
    return [by_id[_plain(t["image_id"])] for t in ground_truths], ground_truths, resolver.skipped_unknown


def _plain(image_id):
    return image_id.item() if isinstance(image_id, np.generic) else image_id
