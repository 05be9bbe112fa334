"""`detect data convert`: a dataset in any readable format written as VOC, COCO or YOLO.

    summary = convert_dataset(data_cfg, splits, out, to="coco", copy=False)

Every split is read as training would read it (the same checks; difficult objects kept), with one
class list for all splits, and written in the target's layout (the one its loader reads by default):

    voc   out/JPEGImages/, out/Annotations/<id>.xml (1-based corners), out/ImageSets/Main/<split>.txt
    coco  out/<split>/ (images), out/annotations/instances_<split>.json (category ids 1..C)
    yolo  out/images/<split>/, out/labels/<split>/<id>.txt (class cx cy w h, 0..1), out/data.yaml

Images are linked (symbolic links to the originals) unless `copy`, under their own file names (an image
whose name another took: its image id, a path's `/` as `__`). Boxes keep their precision: VOC corners
as integers where they are whole, COCO boxes as the pipeline's floats, YOLO to 8 decimals (clipped to
the image). VOC's
`difficult` travels to VOC, COCO's `iscrowd` to COCO; where the target has no such flag, the objects
are written as ordinary ones and counted in the summary (`dropped_flags`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from detect.data.box_formats import xyxy_to_voc, xyxy_to_xywh
from detect.data.yolo import data_yaml, label_line
from detect.errors import DataError
from detect.outputs import check_new_folder, staged_folder

TARGETS = ("voc", "coco", "yolo")


def convert_dataset(data_cfg, splits: list[str], out: str | Path, to: str, copy: bool = False) -> dict:
    """Write `splits` of the dataset `data_cfg` describes to `out` in format `to`; returns
    {"images": per split, "objects": per split, "classes": names, "dropped_flags": {flag: count}}."""
    from detect.data.build import build_dataset, with_class_names

    if to not in TARGETS:
        raise DataError(f"--to {to}: choose from {', '.join(TARGETS)}")
    out = Path(out)
    root = Path(data_cfg.root)
    refuse_inside_source(out, [root if root.is_dir() else root.parent])
    check_new_folder("convert", out)
    data_cfg = with_class_names(data_cfg)
    # Every split is read (and checked) before anything is written.
    samples_of = {split: build_dataset(data_cfg, split, training=False).samples for split in splits}
    refuse_inside_source(out, {sample.image_path.parent for samples in samples_of.values() for sample in samples})
    summary = {"images": {}, "objects": {}, "classes": list(data_cfg.classes), "dropped_flags": {}}
    with staged_folder("convert", out) as staging:
        writer = {"voc": _VOCWriter, "coco": _COCOWriter, "yolo": _YOLOWriter}[to](staging, list(data_cfg.classes),
                                                                                   copy)
        for split, samples in samples_of.items():
            writer.write_split(split, samples)
            summary["images"][split] = len(samples)
            summary["objects"][split] = sum(len(sample.labels) for sample in samples)
            for flag, kept_by in (("difficult", "voc"), ("iscrowd", "coco")):
                count = sum(int(getattr(sample, flag).sum()) for sample in samples)
                if count and to != kept_by:
                    summary["dropped_flags"][flag] = summary["dropped_flags"].get(flag, 0) + count
        writer.finish()
    return summary


def refuse_inside_source(out: Path, source_folders) -> None:
    """DataError when `out` is one of the folders the dataset is read from, or inside one: what convert
    writes there would be read back as part of the source (its images in the source's splits)."""
    resolved = Path(os.path.realpath(out))
    for folder in source_folders:
        folder = Path(os.path.realpath(folder))
        if resolved == folder or folder in resolved.parents:
            raise DataError(f"convert {out}: inside the dataset it converts ({folder}); the copy would become part "
                            "of its source; write it outside")


class _Writer:
    def __init__(self, out: Path, classes: list[str], copy: bool) -> None:
        self.out, self.classes, self.copy = out, classes, copy

    def place_image(self, sample, folder: Path) -> str:
        """Link or copy the sample's image into `folder` under its own file name (or, where another
        image took that name, its image id's); returns the name."""
        folder.mkdir(parents=True, exist_ok=True)
        name = sample.image_path.name
        if (folder / name).exists() or (folder / name).is_symlink():
            name = str(sample.image_id).replace("/", "__") + sample.image_path.suffix.lower()
        target = folder / name
        if target.exists() or target.is_symlink():
            raise DataError(f"{sample.image_path}: another image was already written as {target}")
        if self.copy:
            shutil.copyfile(sample.image_path, target)
        else:
            os.symlink(sample.image_path.resolve(), target)
        return name

    def finish(self) -> None:
        pass


class _VOCWriter(_Writer):
    def write_split(self, split: str, samples) -> None:
        ids = []
        for sample in samples:
            name = self.place_image(sample, self.out / "JPEGImages")
            stem = Path(name).stem
            height, width = sample.image_size()
            (self.out / "Annotations").mkdir(parents=True, exist_ok=True)
            (self.out / "Annotations" / f"{stem}.xml").write_text(self.xml(name, sample, height, width))
            ids.append(stem)
        (self.out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (self.out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))

    def xml(self, name: str, sample, height: int, width: int) -> str:
        objects = []
        for corners, label, difficult in zip(xyxy_to_voc(sample.boxes).tolist(), sample.labels.tolist(),
                                             sample.difficult.tolist()):
            values = "".join(f"<{key}>{_number(value)}</{key}>" for key, value in
                             zip(("xmin", "ymin", "xmax", "ymax"), corners))
            objects.append(f"  <object>\n    <name>{escape(self.classes[label - 1])}</name>\n"
                           f"    <difficult>{int(difficult)}</difficult>\n    <bndbox>{values}</bndbox>\n  </object>\n")
        return (f"<annotation>\n  <filename>{escape(name)}</filename>\n"
                f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
                + "".join(objects) + "</annotation>\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _COCOWriter(_Writer):
    def __init__(self, out: Path, classes: list[str], copy: bool) -> None:
        super().__init__(out, classes, copy)
        self.next_image_id = 1  # image ids unique across the splits, as COCO's are

    def write_split(self, split: str, samples) -> None:
        images, annotations = [], []
        for image_number, sample in enumerate(samples, start=self.next_image_id):
            name = self.place_image(sample, self.out / split)
            height, width = sample.image_size()
            images.append({"id": image_number, "file_name": name, "height": height, "width": width})
            for box, label, crowd in zip(xyxy_to_xywh(np.asarray(sample.boxes, np.float64)).tolist(),
                                         sample.labels.tolist(), sample.iscrowd.tolist()):
                annotations.append({"id": len(annotations) + 1, "image_id": image_number, "category_id": label,
                                    "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd)})
        self.next_image_id += len(samples)
        categories = [{"id": label, "name": name} for label, name in enumerate(self.classes, start=1)]
        (self.out / "annotations").mkdir(parents=True, exist_ok=True)
        (self.out / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))


class _YOLOWriter(_Writer):
    def __init__(self, out: Path, classes: list[str], copy: bool) -> None:
        super().__init__(out, classes, copy)
        self.splits: list[str] = []

    def write_split(self, split: str, samples) -> None:
        self.splits.append(split)
        (self.out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for sample in samples:
            name = self.place_image(sample, self.out / "images" / split)
            height, width = sample.image_size()
            # Clipped to the image: YOLO's fractions live in 0..1.
            boxes = np.clip(np.asarray(sample.boxes, np.float64), 0, [width, height, width, height])
            lines = [label_line(label - 1, box, width, height) for box, label in zip(boxes.tolist(),
                                                                                     sample.labels.tolist())]
            (self.out / "labels" / split / f"{Path(name).stem}.txt").write_text("".join(lines))

    def finish(self) -> None:
        (self.out / "data.yaml").write_text(data_yaml(self.splits, self.classes))
