"""COCO loader: `root/annotations/instances_<split>.json` (or Roboflow's `root/<split>/_annotations.coco.json`,
or any file: `data.annotations`), images in `root/<split>/` or beside the annotation file (or `image_dir`).

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
import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
from pycocotools.coco import COCO

from detect.data.box_formats import xywh_to_xyxy
from detect.data.dataset import DetectionDataset, Sample
from detect.data.formats import DATASET_FORMATS
from detect.data.problems import ProblemLog
from detect.errors import DataError
from detect.text_files import read_json


class CategoryMap:
    """COCO category ids <-> contiguous labels 1..C (label i is category_ids[i - 1])."""

    def __init__(self, category_ids: list[int]) -> None:
        self.category_ids = [int(category_id) for category_id in category_ids]
        self._ids = np.array(self.category_ids, dtype=np.int64)
        # A dict, not an array indexed by id: ids are arbitrary integers (10**12 is a valid one).
        self._label_of_id = {category_id: label for label, category_id in enumerate(self.category_ids, start=1)}

    def category_ids_to_labels(self, category_ids) -> np.ndarray:
        """int [N] COCO category ids -> int64 [N] labels 1..C (0 for an id not in the map)."""
        ids = np.asarray(category_ids, dtype=np.int64).reshape(-1)
        return np.array([self._label_of_id.get(int(i), 0) for i in ids.tolist()], dtype=np.int64)

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
        annotation_file: str | Path | None = None,
    ) -> None:
        log = ProblemLog(on_error)
        root = Path(root)
        self.annotation_file = Path(annotation_file) if annotation_file else find_annotation_file(root, split)
        # Roboflow and most exporters keep the images beside their annotation file.
        beside = self.annotation_file.parent if self.annotation_file.parent != root / "annotations" else None
        self.image_dir = Path(image_dir) if image_dir else beside or root / split
        data = read_coco_json(self.annotation_file)
        valid = validate_coco(data, self.annotation_file, log)
        self.coco = index_with_pycocotools(valid)
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda category: category["id"])
        categories = without_group_categories(categories, self.coco, log, self.annotation_file)
        categories = select_categories(categories, classes, self.annotation_file)
        self.category_map = CategoryMap([category["id"] for category in categories])
        class_names = [category["name"] for category in categories]
        samples = [self._sample(image_id) for image_id in sorted(self.coco.getImgIds())]
        super().__init__(samples, class_names, log, keep_difficult=True)
        self.source_files = [self.annotation_file]
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


@DATASET_FORMATS.register("coco")
def build_coco(data_cfg, split: str, keep_difficult: bool) -> COCODataset:
    """`data.format: coco`: `data.root/annotations/instances_<split>.json`, images in `data.image_dir` or
    `data.root/<split>/` (COCO has no difficult flag: `keep_difficult` changes nothing)."""
    return COCODataset(data_cfg.root, split, classes=data_cfg.classes, image_dir=per_split(data_cfg.image_dir, split),
                       on_error=data_cfg.on_error, annotation_file=per_split(data_cfg.annotations, split))


def per_split(setting, split: str):
    """A setting given once for every split (a path) or per split (a mapping: split -> path)."""
    return setting.get(split) if isinstance(setting, dict) else setting


ROBOFLOW_ANNOTATIONS = "_annotations.coco.json"


def find_annotation_file(root: Path, split: str) -> Path:
    """`root/annotations/instances_<split>.json`, else Roboflow's `root/<split>/_annotations.coco.json`,
    else the one .json file in `root/<split>/`; the first of those when none exists (its error names it)."""
    standard = root / "annotations" / f"instances_{split}.json"
    if standard.exists():
        return standard
    roboflow = root / split / ROBOFLOW_ANNOTATIONS
    if roboflow.exists():
        return roboflow
    alone = sorted((root / split).glob("*.json")) if (root / split).is_dir() else []
    return alone[0] if len(alone) == 1 else standard


def read_coco_json(path: Path) -> dict:
    if not path.exists():
        available = sorted(p.name for p in path.parent.glob("instances_*.json")) if path.parent.is_dir() else []
        hint = f" (there: {', '.join(available)})" if available else ""
        raise DataError(f"{path}: COCO annotation file not found{hint}")
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def validate_coco(data: dict, path: Path, log: ProblemLog) -> dict:
    """Checks fields, types, ids and boxes; returns the data with bad images and annotations left out.

    Ids must be integers and unique (a repeated image id would pair one image's boxes with another
    file, repeated annotation ids corrupt COCO AP); an image's `file_name` must stay inside the image
    folder. Under `on_error: skip` the first of repeated categories and annotations is kept, and
    every image of a repeated image id is left out (which file the boxes belong to is unknowable).
    """
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list field '{key}'")
    categories = check_categories(data["categories"], path, log)
    images = check_images(data["images"], path, log)
    image_ids = {image["id"] for image in images}
    # The objects of an image already refused (and reported) go with it, without a report each.
    refused_image_ids = {_hashable(image.get("id")) for image in data["images"] if isinstance(image, dict)} - image_ids
    category_ids = {category["id"] for category in categories}
    annotations = []
    for index, annotation in enumerate(data.get("annotations") or []):
        if isinstance(annotation, dict) and _hashable(annotation.get("image_id")) in refused_image_ids:
            continue
        checked = check_annotation(annotation, index, image_ids, category_ids, path, log)
        if checked is not None:
            annotations.append(checked)
    annotations = unique_annotation_ids(annotations, path, log)
    return {**data, "images": images, "categories": categories, "annotations": annotations}


def _hashable(value):
    return value if isinstance(value, (int, str, float, type(None))) else repr(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value) -> bool:
    """An integer id that fits int64 (ids travel in numpy and torch arrays)."""
    return _is_int(value) and 0 <= value < 2**63


def check_categories(entries: list, path: Path, log: ProblemLog) -> list[dict]:
    """Categories with an integer id and a name, each id and each name once."""
    categories, seen_ids, seen_names = [], {}, {}
    for index, category in enumerate(entries):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise DataError(f"{path}: categories[{index}] lacks 'id' or 'name'")
        category_id, name = category["id"], category["name"]
        if not _is_id(category_id):
            raise DataError(f"{path}: categories[{index}]: id must be a non-negative integer, got {category_id!r:.40}")
        if not isinstance(name, str) or not name.strip():
            raise DataError(
                f"{path}: categories[{index}] (id {category_id}): name must be a non-empty string, got {name!r:.40}")
        if category_id in seen_ids:
            log.error(path, f"categories[{index}]: category id {category_id} repeats "
                            f"categories[{seen_ids[category_id]}]",
                      "duplicate_id")
            continue
        if name in seen_names:
            log.error(path, f"categories[{index}] (id {category_id}): category name '{name}' repeats "
                            f"categories[{seen_names[name]}]", "duplicate_name")
            continue
        seen_ids[category_id], seen_names[name] = index, index
        categories.append(category)
    if not categories:
        raise DataError(f"{path}: no categories: a model needs at least one class to detect")
    return categories


def check_images(entries: list, path: Path, log: ProblemLog) -> list[dict]:
    """Images with an integer id, a file name inside the image folder and (if given) a positive size;
    every image of a repeated id is left out."""
    images = []
    for index, image in enumerate(entries):
        problem = image_problem(image)
        if problem is not None:
            separator = " " if problem.startswith("lacks") else ": "
            log.error(
                path, f"images[{index}]{separator}{problem}", "missing_field" if "lacks" in problem else "bad_field")
            continue
        images.append(image)
    positions: dict[int, list[int]] = {}
    for position, image in enumerate(images):
        positions.setdefault(image["id"], []).append(position)
    repeated = {image_id: where for image_id, where in positions.items() if len(where) > 1}
    for image_id, where in repeated.items():
        files = ", ".join(repr(images[position]["file_name"]) for position in where)
        log.error(path, f"image id {image_id} is given to {len(where)} images ({files})", "duplicate_id")
    return [image for image in images if image["id"] not in repeated]


def image_problem(image) -> str | None:
    """What is wrong with one `images` entry, or None."""
    if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
        return "lacks 'id' or 'file_name'"
    if not _is_id(image["id"]):
        return f"id must be a non-negative integer, got {image['id']!r:.40}"
    file_name = image["file_name"]
    where = f"image id {image['id']}"
    if not isinstance(file_name, str) or not file_name:
        return f"{where}: file_name must be a non-empty string, got {file_name!r:.40}"
    parts = PurePosixPath(file_name.replace("\\", "/")).parts
    if file_name.startswith(("/", "\\")) or PureWindowsPath(file_name).drive or ".." in parts:
        return f"{where}: file_name {file_name!r} points outside the image folder"
    for key in ("width", "height"):
        if key in image and not (_is_int(image[key]) and image[key] > 0):
            return f"{where}: {key} must be a positive integer, got {image[key]!r:.40}"
    return None


def check_annotation(annotation, index, image_ids, category_ids, path: Path, log: ProblemLog):
    """One annotation, or None when it is unusable (error recorded)."""
    if not isinstance(annotation, dict):
        log.error(path, f"annotations[{index}] is not an object", "missing_field")
        return None
    where = f"annotation id {annotation.get('id', f'#{index}')!r:.40}"
    missing = [key for key in ("image_id", "category_id", "bbox") if key not in annotation]
    if missing:
        log.error(path, f"{where}: missing field {', '.join(missing)}", "missing_field")
        return None
    wrong_type = [key for key in ("id", "image_id", "category_id") if key in annotation and not _is_id(annotation[key])]
    if wrong_type:
        shown = ", ".join(f"{key} {annotation[key]!r:.40}" for key in wrong_type)
        log.error(path, f"annotations[{index}]: {shown}: must be a non-negative integer", "bad_field")
        return None
    bbox = annotation["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox)):
        log.error(path, f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r:.80}", "missing_field")
        return None
    if annotation["image_id"] not in image_ids:
        log.error(path, f"{where}: image_id {annotation['image_id']} is not in images", "missing_field")
        return None
    if annotation["category_id"] not in category_ids:
        log.error(path, f"{where}: category_id {annotation['category_id']} is not in categories", "missing_field")
        return None
    problem = optional_field_problem(annotation)
    if problem is not None:
        log.error(path, f"{where} (image id {annotation['image_id']}): {problem}", "bad_field")
        return None
    if bbox[2] <= 0 or bbox[3] <= 0:
        log.error(path, f"{where} (image id {annotation['image_id']}): degenerate box {bbox}", "degenerate_box")
        return None
    # pycocotools' index wants an area; fill it where a hand-written file lacks it (ids: see below).
    return {"area": float(bbox[2] * bbox[3]), "iscrowd": 0, **annotation}


def optional_field_problem(annotation: dict) -> str | None:
    """What is wrong with the fields COCO evaluation reads besides the box, or None: `area` a number
    of at least 0, `iscrowd` 0 or 1 (or true / false). Checked here: pycocotools would fail on them
    only when scoring, after a whole evaluation run."""
    if "area" in annotation and not (_is_finite_number(annotation["area"]) and annotation["area"] >= 0):
        return f"area must be a number of at least 0, got {annotation['area']!r:.40}"
    if "iscrowd" in annotation and annotation["iscrowd"] not in (0, 1):  # True == 1 and False == 0
        return f"iscrowd must be 0 or 1, got {annotation['iscrowd']!r:.40}"
    return None


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unique_annotation_ids(annotations: list[dict], path: Path, log: ProblemLog) -> list[dict]:
    """Annotations with unique ids: a repeated id is an error (the first is kept under skip), and an
    annotation without one gets a fresh id above every given one (pycocotools indexes by id)."""
    kept, seen = [], set()
    for annotation in annotations:
        if "id" not in annotation:
            kept.append(annotation)
            continue
        if annotation["id"] in seen:
            log.error(path, f"annotation id {annotation['id']} is used more than once "
                            f"(image id {annotation['image_id']})", "duplicate_id")
            continue
        seen.add(annotation["id"])
        kept.append(annotation)
    next_id = max(seen, default=0) + 1
    for annotation in kept:
        if "id" not in annotation:
            annotation["id"] = next_id
            next_id += 1
    return kept


def index_with_pycocotools(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()
    return coco


def without_group_categories(categories: list[dict], coco: COCO, log: ProblemLog | None = None,
                             path: Path | None = None) -> list[dict]:
    """Without the categories that only name a group of others (Roboflow's exports start with one, id 0,
    the supercategory of every class, never on an object): they are not classes to detect. A group is
    the supercategory of at least one other category and has no objects of its own; a category that
    is only its own supercategory (many exporters write each class so) is a class, with or without
    objects in this split. Each category left out is said in `log` (a warning on `path`)."""
    groups = [category for category in categories if not coco.getAnnIds(catIds=[category["id"]])
              and any(other["id"] != category["id"] and other.get("supercategory") == category["name"]
                      for other in categories)]
    if log is not None:
        for group in groups:
            log.warning(path, f"category '{group['name']}' (id {group['id']}) names a group of the others and has "
                              "no objects: not read as a class", "group_category")
    group_ids = {group["id"] for group in groups}
    return [category for category in categories if category["id"] not in group_ids]


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
