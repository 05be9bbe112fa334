"""Pascal VOC loader: XML annotations, JPEG images, ImageSets split lists.

Two layouts:
- a single dataset folder: `root/Annotations/<id>.xml`, `root/JPEGImages/<id>.jpg`,
  `root/ImageSets/Main/<split>.txt`; split such as `trainval`;
- a VOCdevkit: `root/VOC2007/...` with the same inside; split such as `VOC2007/trainval`, and
  several joined with `+` (`VOC2007/trainval+VOC2012/trainval`) are concatenated.

Annotations are parsed and validated when the dataset is built (missing files, malformed XML,
missing fields, degenerate boxes, unknown classes); pixels are read and checked per item (see
detect/data/dataset.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np

from detect.data.box_formats import voc_to_xyxy, xyxy_to_voc
from detect.data.dataset import DetectionDataset, Sample
from detect.data.formats import DATASET_FORMATS
from detect.data.problems import ProblemLog
from detect.data.splits import draws_splits
from detect.errors import DataError
from detect.text_files import MAX_LABEL_FILE_BYTES, MAX_LIST_FILE_BYTES, read_lines

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class VOCDataset(DetectionDataset):
    """Raw VOC items (see DetectionDataset). `class_names` from `classes`, or sorted from the XML.

    Detections written for this data (`infer --json`) and read from results files (`eval
    --detections`) are in the XML's own corner convention, converted like the ground truth:
    `corners_to_xyxy` / `xyxy_to_corners`.
    """

    corners_to_xyxy = staticmethod(voc_to_xyxy)
    xyxy_to_corners = staticmethod(xyxy_to_voc)

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: list[str] | None = None,
        unknown_class: Literal["raise", "skip"] = "raise",
        on_error: Literal["raise", "skip"] = "raise",
        keep_difficult: bool = True,
        whole_folder: bool = False,
    ) -> None:
        log = ProblemLog(on_error)
        parsed = []  # (image_path, xml_path, image_id, size, names, voc_boxes, difficult)
        for folder, split_name in split_parts(Path(root), split):
            parsed.extend(parse_split(folder, split_name, log, whole_folder))
        if classes is None:
            classes = sorted({name for *_, names, _, _ in parsed for name in names})
        samples = [to_sample(entry, classes, unknown_class, log) for entry in parsed]
        super().__init__(samples, classes, log, keep_difficult)
        self.source_files = [split_source(folder, name) for folder, name in split_parts(Path(root), split)]
        self.root = Path(root)
        self.split = split
        # A flat folder's image without XML is read without objects (parse_flat_split marks it so).
        self.unlabelled = [(image, image.with_suffix(".xml")) for image, xml, *_ in parsed if xml == image]
        self.report_unlabelled(self.source_files[0])


@DATASET_FORMATS.register("voc")
def build_voc(data_cfg, split: str, keep_difficult: bool) -> VOCDataset:
    """`data.format: voc`: split `split` of the VOC folder `data.root` (see the module docstring). A folder
    without split folders is one pool when the validation part is drawn from it (data.val_fraction)."""
    whole_folder = draws_splits(data_cfg) and split == data_cfg.train_split
    return VOCDataset(data_cfg.root, split, classes=data_cfg.classes, unknown_class=data_cfg.unknown_class,
                      on_error=data_cfg.on_error, keep_difficult=keep_difficult, whole_folder=whole_folder)


def split_parts(root: Path, split: str) -> list[tuple[Path, str]]:
    """`VOC2007/trainval+VOC2012/trainval` -> [(root/VOC2007, trainval), ...]; `trainval` -> [(root, trainval)]."""
    parts = []
    for part in split.split("+"):
        part = part.strip().strip("/")
        if not part:
            raise DataError(f"{root}: empty part in VOC split '{split}'")
        folder, _, name = part.rpartition("/")
        parts.append((root / folder if folder else root, name))
    return parts


def read_split_ids(folder: Path, split_name: str) -> list[str]:
    split_file = folder / "ImageSets" / "Main" / f"{split_name}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (folder / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        hint = f" (splits there: {', '.join(available)})" if available else ""
        if not folder.is_dir():
            raise DataError(f"{folder}: VOC dataset folder not found")
        raise DataError(f"{split_file}: VOC split file not found{hint}")
    # A line may carry a second column (the per-class lists do); the id is the first word.
    return [line.split()[0] for line in read_lines(split_file, "VOC split file", MAX_LIST_FILE_BYTES) if line.strip()]


def is_devkit(folder: Path) -> bool:
    """A VOC devkit folder (split lists in ImageSets/Main), or a plain folder of images and XML files."""
    return (folder / "ImageSets" / "Main").is_dir()


def split_source(folder: Path, split_name: str) -> Path:
    """What defines a split: its list file in a devkit, else its folder."""
    if is_devkit(folder):
        return folder / "ImageSets" / "Main" / f"{split_name}.txt"
    return folder / split_name if (folder / split_name).is_dir() else folder


def parse_split(folder: Path, split_name: str, log: ProblemLog, whole_folder: bool = False) -> list[tuple]:
    if not is_devkit(folder):
        return parse_flat_split(folder, split_name, log, whole_folder)
    image_ids = read_split_ids(folder, split_name)
    image_dir = folder / "JPEGImages"
    images_by_stem = index_images(image_dir)
    entries = []
    for image_id in image_ids:
        xml_path = folder / "Annotations" / f"{image_id}.xml"
        image_path = images_by_stem.get(image_id)
        if image_path is None:
            log.error(image_dir / f"{image_id}.jpg", "image file not found", "missing_image")
            continue
        entry = parse_voc_xml(xml_path, log)
        if entry is not None:
            entries.append((image_path, xml_path, image_id, *entry))
    return entries


def parse_flat_split(folder: Path, split_name: str, log: ProblemLog, whole_folder: bool = False) -> list[tuple]:
    """A split of a folder without ImageSets, as labelImg leaves them: the split is the subfolder
    `split_name` (train/, val/, test/), its images anywhere below it, each image's XML beside it or in
    an `Annotations` folder next to its image folder; an image without XML has no objects.
    `whole_folder`: without that subfolder, every image of the folder (the pool a validation part is
    drawn from)."""
    split_dir = folder / split_name
    if not split_dir.is_dir():
        if not folder.is_dir():
            raise DataError(f"{folder}: VOC dataset folder not found")
        if whole_folder:
            split_dir = folder
        else:
            present = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "Annotations")
            raise DataError(f"{folder}: no ImageSets/Main split lists and no '{split_name}' folder (folders there: "
                            f"{', '.join(present) or 'none'}); name a split folder in data.train_split / "
                            f"val_split, or set data.val_fraction to draw a validation part from the images")
    entries = []
    images = sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    for image_path in images:
        image_id = image_path.relative_to(split_dir).with_suffix("").as_posix()
        beside = image_path.with_suffix(".xml")
        apart = image_path.parent.parent / "Annotations" / f"{image_path.stem}.xml"
        xml_path = beside if beside.is_file() else apart if apart.is_file() else None
        if xml_path is None:
            no_objects = (None, [], np.zeros((0, 4), np.float32), np.zeros(0, bool))
            entries.append((image_path, image_path, image_id, *no_objects))
            continue
        entry = parse_voc_xml(xml_path, log)
        if entry is not None:
            entries.append((image_path, xml_path, image_id, *entry))
    report_orphans(sorted(split_dir.rglob("*.xml")), {entry[1] for entry in entries}, split_dir, log)
    return entries


def report_orphans(label_files: list[Path], used: set[Path], where: Path, log: ProblemLog) -> None:
    """One warning with the count of the label files (XML, YOLO .txt) that no image of the split uses."""
    orphans = [path for path in label_files if path not in used]
    if orphans:
        log.warning(where, f"{len(orphans)} label files have no image and are not read (e.g. {orphans[0]})",
                    "orphan_label")


def index_images(image_dir: Path) -> dict[str, Path]:
    """Stem -> image file (prefers .jpg; other extensions work, the bytes decide the format)."""
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: VOC image folder not found")
    found: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and (path.stem not in found or path.suffix == ".jpg"):
            found[path.stem] = path
    return found


def parse_voc_xml(xml_path: Path, log: ProblemLog):
    """-> (size (h, w) or None, names [N], voc_boxes float [N, 4], difficult bool [N]), or None when skipped."""
    try:
        size_bytes = xml_path.stat().st_size
        if size_bytes > MAX_LABEL_FILE_BYTES:
            log.error(xml_path, f"{size_bytes / 2**20:.0f} MiB, larger than any annotation file (at most "
                                f"{MAX_LABEL_FILE_BYTES >> 20} MiB); not read", "malformed_annotation")
            return None
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        log.error(xml_path, "annotation file not found", "missing_annotation")
        return None
    except ET.ParseError as error:
        log.error(xml_path, f"malformed XML: {error}", "malformed_annotation")
        return None
    strip_namespaces(root)
    if root.tag != "annotation":
        log.error(xml_path, f"not a VOC annotation: the root element is <{root.tag}>, not <annotation>",
                  "malformed_annotation")
        return None
    size = parse_size(root, xml_path, log)
    names, boxes, difficult = [], [], []
    for index, obj in enumerate(root.findall("object")):
        parsed = parse_object(obj, index, xml_path, log)
        if parsed is not None:
            names.append(parsed[0])
            boxes.append(parsed[1])
            difficult.append(parsed[2])
    return size, names, np.array(boxes, np.float32).reshape(-1, 4), np.array(difficult, bool)


def strip_namespaces(root: ET.Element) -> None:
    """`<annotation xmlns="...">` or `<v:annotation xmlns:v="...">`: ElementTree names every element
    `{uri}tag`, so a lookup of `object` finds none and the file would read as empty. VOC has no
    namespace of its own: the names without it are the VOC names."""
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]


def parse_size(root: ET.Element, xml_path: Path, log: ProblemLog) -> tuple[int, int] | None:
    """The annotated (h, w), or None where absent or unusable (the pixels decide the size anyway)."""
    size = root.find("size")
    if size is None:
        return None
    try:
        width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
    except (TypeError, ValueError):
        log.warning(xml_path, "<size> lacks a numeric width or height; using the image's", "bad_size")
        return None
    if width <= 0 or height <= 0:
        log.warning(xml_path, f"<size> is {width}x{height}; using the image's", "bad_size")
        return None
    return height, width


def parse_object(obj: ET.Element, index: int, xml_path: Path, log: ProblemLog):
    """One <object> -> (name, voc_box [4], difficult), or None when skipped (error recorded)."""
    name = (obj.findtext("name") or "").strip()
    if not name:
        log.error(xml_path, f"object {index}: missing <name>", "missing_field")
        return None
    box = obj.find("bndbox")
    if box is None:
        log.error(xml_path, f"object {index} ({name}): missing <bndbox>", "missing_field")
        return None
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = box.findtext(key)
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            problem = "missing" if text is None else f"non-numeric ({text!r})"
            log.error(xml_path, f"object {index} ({name}): <bndbox> {key} {problem}", "missing_field")
            return None
    xmin, ymin, xmax, ymax = values
    if xmax <= xmin or ymax <= ymin:
        log.error(
            xml_path,
            f"object {index} ({name}): degenerate box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}",
            "degenerate_box",
        )
        return None
    text = (obj.findtext("difficult") or "0").strip()
    difficult = DIFFICULT_SPELLINGS.get(text.lower())
    if difficult is None:
        log.error(xml_path, f"object {index} ({name}): <difficult> is {text!r}; write 0 or 1 (or true / false, "
                            "yes / no)", "bad_field")
        return None
    return name, values, difficult


# <difficult>'s values as annotation tools write them (the empty element reads as 0).
DIFFICULT_SPELLINGS = {"": False, "0": False, "0.0": False, "false": False, "no": False,
                       "1": True, "1.0": True, "true": True, "yes": True}


def to_sample(entry: tuple, classes: list[str], unknown_class: str, log: ProblemLog) -> Sample:
    image_path, xml_path, image_id, size, names, voc_boxes, difficult = entry
    label_of = {name: label for label, name in enumerate(classes, start=1)}
    known = np.array([name in label_of for name in names], dtype=bool)
    for name in sorted({name for name in names if name not in label_of}):
        message = f"class '{name}' is not in data.classes ({', '.join(classes)})"
        if unknown_class == "skip":
            log.warning(xml_path, message + "; skipped (unknown_class: skip)", "unknown_class")
        else:
            log.error(xml_path, message + "; set data.classes, or data.unknown_class: skip", "unknown_class")
    return Sample(
        image_path=image_path,
        source=str(xml_path),
        image_id=image_id,
        boxes=voc_to_xyxy(voc_boxes[known]),
        labels=np.array([label_of[name] for name in names if name in label_of], dtype=np.int64),
        difficult=difficult[known],
        iscrowd=np.zeros(int(known.sum()), dtype=bool),
        annotated_size=size,
    )
