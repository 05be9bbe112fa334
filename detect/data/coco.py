"""COCO loader: `root/annotations/instances_<split>.json`, images in `root/<split>/` (or `image_dir`).

The JSON is read and checked by us (so a malformed file or a missing field gets a one-line message
with the file, line or object) and then indexed by pycocotools (`self.coco`, which COCO evaluation
can use as ground truth). COCO category ids (1..90 with gaps for COCO itself) become contiguous
labels 1..C in the order of `categories` sorted by id; `CategoryMap` converts both ways (predictions
are written back with the original ids). `iscrowd` boxes are kept with the flag set; images without
annotations are included.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pycocotools.coco import COCO

from detect.data.dataset import DetectionDataset, Sample
from detect.data.problems import ProblemLog
from detect.errors import DataError
from detect.metrics.coco import xywh_to_xyxy


class CategoryMap:
    """COCO category ids <-> contiguous labels 1..C (label i is category_ids[i - 1])."""

    def __init__(self, category_ids: list[int]) -> None:
        self.category_ids = [int(category_id) for category_id in category_ids]
        self._ids = np.array(self.category_ids, dtype=np.int64)
        size = (max(self.category_ids) + 1) if self.category_ids else 1
        self._label_of_id = np.zeros(size, dtype=np.int64)  # 0: not a mapped category
        self._label_of_id[self._ids] = np.arange(1, len(self._ids) + 1)

    def category_ids_to_labels(self, category_ids) -> np.ndarray:
        """int [N] COCO category ids -> int64 [N] labels 1..C (0 for an id not in the map)."""
        ids = np.asarray(category_ids, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(self._label_of_id))
        return np.where(inside, self._label_of_id[np.where(inside, ids, 0)], 0)

    def labels_to_category_ids(self, labels) -> np.ndarray:
        """int [N] labels 1..C -> int64 [N] COCO category ids (for writing COCO results)."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 1 or labels.max() > len(self._ids)):
            raise ValueError(f"labels must be in 1..{len(self._ids)}, got {labels.min()}..{labels.max()}")
        return self._ids[labels - 1]


class COCODataset(DetectionDataset):
    """Raw COCO items (see DetectionDataset); `image_id` is the COCO image id (int)."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: list[str] | None = None,
        image_dir: str | Path | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        log = ProblemLog(on_error)
        root = Path(root)
        self.annotation_file = root / "annotations" / f"instances_{split}.json"
        self.image_dir = Path(image_dir) if image_dir else root / split
        data = read_coco_json(self.annotation_file)
        valid = validate_coco(data, self.annotation_file, log)
        self.coco = index_with_pycocotools(valid)
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda category: category["id"])
        categories = select_categories(categories, classes, self.annotation_file)
        self.category_map = CategoryMap([category["id"] for category in categories])
        class_names = [category["name"] for category in categories]
        samples = [self._sample(image_id) for image_id in sorted(self.coco.getImgIds())]
        super().__init__(samples, class_names, log, keep_difficult=True)
        self.root = root
        self.split = split

    @property
    def category_ids(self) -> list[int]:
        return self.category_map.category_ids

    def _sample(self, image_id: int) -> Sample:
        info = self.coco.imgs[image_id]
        annotations = self.coco.imgToAnns.get(image_id, [])
        labels = self.category_map.category_ids_to_labels([a["category_id"] for a in annotations])
        keep = labels > 0  # categories left out by data.classes
        kept = [a for a, k in zip(annotations, keep) if k]
        size = (int(info["height"]), int(info["width"])) if "height" in info and "width" in info else None
        return Sample(
            image_path=self.image_dir / info["file_name"],
            source=f"{self.annotation_file} (image id {image_id}, {info['file_name']})",
            image_id=int(image_id),
            boxes=xywh_to_xyxy([a["bbox"] for a in kept]).astype(np.float32),
            labels=labels[keep],
            difficult=np.zeros(len(kept), dtype=bool),
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in kept], dtype=bool),
            annotated_size=size,
        )


def read_coco_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        available = sorted(p.name for p in path.parent.glob("instances_*.json")) if path.parent.is_dir() else []
        hint = f" (there: {', '.join(available)})" if available else ""
        raise DataError(f"{path}: COCO annotation file not found{hint}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def validate_coco(data: dict, path: Path, log: ProblemLog) -> dict:
    """Checks fields and boxes; returns the data with bad images and annotations left out."""
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list field '{key}'")
    categories = []
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise DataError(f"{path}: categories[{index}] lacks 'id' or 'name'")
        categories.append(category)
    images = []
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            log.error(path, f"images[{index}] lacks 'id' or 'file_name'", "missing_field")
            continue
        images.append(image)
    image_ids = {image["id"] for image in images}
    category_ids = {category["id"] for category in categories}
    annotations = []
    for index, annotation in enumerate(data.get("annotations") or []):
        checked = check_annotation(annotation, index, image_ids, category_ids, path, log)
        if checked is not None:
            annotations.append(checked)
    return {**data, "images": images, "categories": categories, "annotations": annotations}


def check_annotation(annotation, index, image_ids, category_ids, path: Path, log: ProblemLog):
    """One annotation, or None when it is unusable (error recorded)."""
    if not isinstance(annotation, dict):
        log.error(path, f"annotations[{index}] is not an object", "missing_field")
        return None
    where = f"annotation id {annotation.get('id', f'#{index}')}"
    missing = [key for key in ("image_id", "category_id", "bbox") if key not in annotation]
    if missing:
        log.error(path, f"{where}: missing field {', '.join(missing)}", "missing_field")
        return None
    bbox = annotation["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        log.error(path, f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}", "missing_field")
        return None
    if annotation["image_id"] not in image_ids:
        log.error(path, f"{where}: image_id {annotation['image_id']} is not in images", "missing_field")
        return None
    if annotation["category_id"] not in category_ids:
        log.error(path, f"{where}: category_id {annotation['category_id']} is not in categories", "missing_field")
        return None
    if bbox[2] <= 0 or bbox[3] <= 0:
        log.error(path, f"{where} (image id {annotation['image_id']}): degenerate box {bbox}", "degenerate_box")
        return None
    # pycocotools' index wants an id and an area; fill them where a hand-written file lacks them.
    return {"id": index + 1, "area": float(bbox[2] * bbox[3]), "iscrowd": 0, **annotation}


def index_with_pycocotools(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()
    return coco


def select_categories(categories: list[dict], classes: list[str] | None, path: Path) -> list[dict]:
    """All categories (sorted by id), or those named in `classes`, in that order."""
    if classes is None:
        return categories
    by_name = {category["name"]: category for category in categories}
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise DataError(
            f"{path}: data.classes names {', '.join(missing)} not among its categories "
            f"({', '.join(by_name)})"
        )
    return [by_name[name] for name in classes]
