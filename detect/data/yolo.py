"""YOLO text labels, as Ultralytics and Roboflow export them: `data.format: yolo`.

    data.yaml       path: DIR (optional; relative to this file's folder, which it defaults to)
                    train: images/train       a folder of images, a .txt list of image paths, or a list
                    val: images/val           of those (relative to `path`; list lines starting with
                                              ./ relative to the list file)
                    names: [person, car]      or {0: person, 1: car}
    labels          for DIR/images/.../NAME.jpg: DIR/labels/.../NAME.txt (the last `images` folder of
                    the path becomes `labels`), one `class cx cy w h` line per object: a 0-based class
                    id and the box centre and size as fractions of the image (0..1)

`data.root` is the data.yaml file or the folder that holds it; `data.train_split` / `data.val_split`
name its keys (train, val, test). An image without a label file has no objects. Image sizes come
from the file headers (image_header.py), so labels become pixels without decoding an image. A line
that is not 5 numbers, a class id outside `names`, or a box reaching outside the image by more than
rounding (ROUNDING of the side) is a problem naming the label file and line (data.on_error decides
what it does); a box within rounding of the border is clipped to it. With `data.classes`, objects
are labelled by those names (label order), and a class of `names` not among them follows
`data.unknown_class`. Results files (`infer --json`, `eval --detections`) name classes by their ids in
`names`, as the label files do, and images by file name.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from detect.data.coco import CategoryMap
from detect.data.dataset import DetectionDataset, Sample
from detect.data.formats import DATASET_FORMATS
from detect.data.image_header import file_header_size
from detect.data.image_io import missing_image_message
from detect.data.problems import ProblemLog
from detect.data.voc import IMAGE_EXTENSIONS, report_orphans
from detect.errors import DataError
from detect.text_files import (
    MAX_LABEL_FILE_BYTES,
    MAX_LIST_FILE_BYTES,
    MAX_YAML_FILE_BYTES,
    parse_yaml,
    read_lines,
    read_text,
)

DATA_FILES = ("data.yaml", "data.yml")
ROUNDING = 1e-3  # how far (a fraction of the image side) a box may reach past the border: rounding


class YOLODataset(DetectionDataset):
    """Raw YOLO items (see DetectionDataset); `image_id` is the image path relative to the dataset
    folder, without its suffix."""

    def __init__(self, root: str | Path, split: str, classes: list[str] | None = None,
                 unknown_class: str = "raise", on_error: str = "raise") -> None:
        log = ProblemLog(on_error)
        data_file = find_data_file(Path(root))
        spec = read_data_file(data_file)
        names = class_names(spec, data_file)
        path_entry = spec.get("path") or "."
        if not isinstance(path_entry, str):
            raise DataError(f"{data_file}: path must be a folder (a string), got {path_entry!r}")
        base = Path(path_entry)
        base = base if base.is_absolute() else (data_file.parent / base)
        if split not in spec or spec[split] in (None, ""):
            present = [key for key in ("train", "val", "test") if spec.get(key)]
            raise DataError(f"{data_file}: no '{split}' split (it lists {', '.join(present) or 'none'})")
        listed = split_images(spec[split], base, data_file)
        images = list(dict.fromkeys(listed))  # an image listed twice is one image, not two
        if len(images) < len(listed):
            repeated = next(path for path, count in Counter(listed).items() if count > 1)
            log.warning(data_file, f"split '{split}' lists {len(listed) - len(images)} images more than once; each is "
                                   f"read once (e.g. {repeated})", "duplicate_image")
        classes = list(classes) if classes is not None else names
        strangers = [name for name in classes if name not in names]
        if strangers:
            raise DataError(f"{data_file}: data.classes names {', '.join(strangers)} not among its names "
                            f"({', '.join(names)})")
        label_of = {name: label for label, name in enumerate(classes, start=1)}
        # Each label's class id in the files: `infer --json` writes these, `eval --detections` reads them.
        self.category_map = CategoryMap([names.index(name) for name in classes])
        samples = [_sample(image, base, names, label_of, unknown_class, log) for image in images]
        super().__init__([sample for sample in samples if sample is not None], classes, log)
        self.source_files = [data_file]
        self.root, self.split = base, split
        label_files = {Path(sample.source) for sample in self.samples}
        self.unlabelled = [(sample.image_path, Path(sample.source)) for sample in self.samples
                           if not Path(sample.source).is_file()]
        self.report_unlabelled(data_file)
        # labelImg keeps the class list as classes.txt among the label files: not an orphan.
        found = sorted(path for folder in {path.parent for path in label_files} if folder.is_dir()
                       for path in folder.glob("*.txt") if path.name != "classes.txt")
        report_orphans(found, label_files, data_file, log)


@DATASET_FORMATS.register("yolo")
def build_yolo(data_cfg, split: str, keep_difficult: bool) -> YOLODataset:
    """`data.format: yolo` (YOLO labels have no difficult flag: `keep_difficult` changes nothing)."""
    return YOLODataset(data_cfg.root, split, classes=data_cfg.classes, unknown_class=data_cfg.unknown_class,
                       on_error=data_cfg.on_error)


def find_data_file(root: Path) -> Path:
    if root.is_file():
        return root
    for name in DATA_FILES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no data.yaml here (data.format yolo takes the data.yaml file or its folder)")


def read_data_file(path: Path) -> dict:
    try:
        spec = parse_yaml(read_text(path, "data.yaml", MAX_YAML_FILE_BYTES))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None)
        raise DataError(f"{path}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping with names and the split folders")
    return spec


def class_names(spec: dict, path: Path) -> list[str]:
    """`names` as a list, or as a mapping from the ids 0..n-1 to names."""
    names = spec.get("names")
    if isinstance(names, dict):
        ids = sorted(names) if all(isinstance(key, int) for key in names) else None
        if ids != list(range(len(names))):
            raise DataError(f"{path}: names maps ids to names, and the ids must be 0..{len(names) - 1}")
        names = [names[i] for i in ids]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) for n in names):
        raise DataError(f"{path}: names must list the class names (a list, or a mapping from 0-based ids)")
    names = [str(name) for name in names]
    repeated = next((name for name, count in Counter(names).items() if count > 1), None)
    if repeated is not None:
        ids = [index for index, name in enumerate(names) if name == repeated]
        raise DataError(f"{path}: names gives '{repeated}' to the ids {', '.join(map(str, ids))}; each class needs "
                        "a name of its own")
    return names


def split_images(entry, base: Path, data_file: Path) -> list[Path]:
    """The images of a split entry: folders (searched recursively), list files, or lists of them."""
    images = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = Path(str(item))
        path = path if path.is_absolute() else base / path
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file() and path.suffix == ".txt":
            for line in read_lines(path, "image list", MAX_LIST_FILE_BYTES):
                line = line.strip()
                if line:
                    listed = path.parent / line[2:] if line.startswith("./") else Path(line)
                    images.append(listed if listed.is_absolute() else base / listed)
        else:
            raise DataError(f"{data_file}: split entry '{item}' is neither a folder nor a .txt list ({path} "
                            f"not found)")
    return images


def label_file(image: Path) -> Path:
    """images/.../NAME.ext -> labels/.../NAME.txt (the last `images` folder of the path)."""
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _sample(image: Path, base: Path, names: list[str], label_of: dict, unknown_class: str,
            log: ProblemLog) -> Sample | None:
    try:
        size = file_header_size(image)
    except FileNotFoundError:
        log.error(image, missing_image_message(image), "missing_image")
        return None
    except OSError as error:
        log.error(image, f"cannot read the image file ({error.strerror or error})", "missing_image")
        return None
    if size is None:
        log.error(image, "not an image whose size its header gives (JPEG, PNG, BMP, GIF, TIFF, WebP, PNM)",
                  "unreadable_image")
        return None
    _, width, height = size
    labels_path = label_file(image)
    boxes, labels = [], []
    if labels_path.is_file():
        try:
            lines = list(enumerate(read_lines(labels_path, "label file", MAX_LABEL_FILE_BYTES), start=1))
        except DataError as error:
            log.error(labels_path, str(error).removeprefix(f"{labels_path}: "), "malformed_annotation")
            return None
        for number, line in lines:
            parsed = _parse_line(line, number, labels_path, len(names), log)
            if parsed is None:
                continue
            class_id, (cx, cy, w, h) = parsed
            name = names[class_id]
            if name not in label_of:
                message = f"line {number}: class '{name}' is not in data.classes"
                if unknown_class == "skip":
                    log.warning(labels_path, message + "; skipped (unknown_class: skip)", "unknown_class")
                else:
                    log.error(labels_path, message + "; set data.classes, or data.unknown_class: skip", "unknown_class")
                continue
            corners = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0.0, 1.0)
            boxes.append(corners * [width, height, width, height])
            labels.append(label_of[name])
    try:
        image_id = image.relative_to(base).with_suffix("").as_posix()
    except ValueError:
        image_id = image.with_suffix("").as_posix()
    count = len(labels)
    return Sample(image, str(labels_path), image_id, np.asarray(boxes, np.float32).reshape(-1, 4),
                  np.asarray(labels, np.int64), np.zeros(count, bool), np.zeros(count, bool), (height, width))


def _parse_line(line: str, number: int, path: Path, num_classes: int, log: ProblemLog):
    """(class id, (cx, cy, w, h)) of one label line; None for a blank line or a problem (logged)."""
    fields = line.split()
    if not fields:
        return None
    try:
        values = [float(field) for field in fields]
    except ValueError:
        log.error(path, f"line {number}: expected 5 numbers (class cx cy w h), got '{line.strip()[:60]}'",
                  "malformed_label")
        return None
    if len(values) != 5:
        log.error(path, f"line {number}: expected 5 numbers (class cx cy w h), got {len(values)}", "malformed_label")
        return None
    class_id, cx, cy, w, h = values
    if not class_id.is_integer() or not 0 <= class_id < num_classes:
        log.error(path, f"line {number}: class id {fields[0]} is not one of names' 0..{num_classes - 1}",
                  "unknown_class")
        return None
    if not all(np.isfinite([cx, cy, w, h])) or w <= 0 or h <= 0:
        log.error(path, f"line {number}: box {' '.join(fields[1:])} has no area", "degenerate_box")
        return None
    if min(cx - w / 2, cy - h / 2) < -ROUNDING or max(cx + w / 2, cy + h / 2) > 1 + ROUNDING:
        log.error(path, f"line {number}: box {' '.join(fields[1:])} reaches outside the image (0..1)", "bad_box")
        return None
    return int(class_id), (cx, cy, w, h)


# ---------------------------------------------------------------------------------------------------
# Writing (detect data synth --format yolo, detect data convert --format yolo)


def label_line(class_id: int, box, width: int, height: int, decimals: int = 8) -> str:
    """One label line for a pixel box (x0, y0, x1, y1) in a width x height image."""
    x0, y0, x1, y1 = box
    values = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return f"{class_id} " + " ".join(f"{value:.{decimals}f}" for value in values) + "\n"


def data_yaml(splits: list[str], names: list[str]) -> str:
    """data.yaml for images/<split>/ folders beside it. No `path:` key: both readers then take the file's
    own folder (Ultralytics reads a relative `path`, even `.`, from its datasets folder instead)."""
    lines = [f"{split}: images/{split}" for split in splits] + ["names:"]
    lines += [f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)]
    return "\n".join(lines) + "\n"
