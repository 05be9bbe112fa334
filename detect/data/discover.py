"""`--data PATH`: which dataset a folder or file is, found from its files, as the `data` settings that
read it.

    found = discover_data(path)      FoundData(format, settings, what); DataError when PATH is none of
                                     the forms, or could be several of them (the line lists them)

The forms, as users have them:

    a YOLO data.yaml, or a folder holding one        (Ultralytics, Roboflow's YOLO export)
    a COCO annotation JSON file                      (one file: the validation part is drawn from it)
    a folder with annotations/instances_<split>.json (COCO's own layout)
    a folder with <split>/_annotations.coco.json     (Roboflow's COCO export: train, valid, test)
    a VOC devkit (ImageSets/Main/<split>.txt), or a folder of VOC20XX devkits
    a folder of images with VOC XML files beside them, or in Annotations/ (labelImg); split folders
                                                     (train/, val/ or valid/) are used when present

Classes always come from the data (data.classes: null). Where the data has no validation split, a
stratified validation part is drawn from the training images (data.val_fraction, VAL_FRACTION).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detect.data.voc import IMAGE_EXTENSIONS
from detect.data.yolo import DATA_FILES
from detect.errors import DataError

VAL_FRACTION = 0.2  # the validation part drawn where the data has none
VAL_NAMES = ("val", "valid", "validation")  # Roboflow exports name it `valid`
TRAIN_NAMES = ("train", "trainval")


@dataclass
class FoundData:
    format: str
    settings: dict  # data.* keys that read it: root, format, splits, val_fraction, annotations, classes
    what: str  # the form found, for the one line a run prints ("a VOC devkit: train / val")


def discover_data(path: str | Path) -> FoundData:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_file():
        return _from_file(path)
    candidates = [found for finder in FINDERS if (found := finder(path)) is not None]
    if not candidates:
        raise DataError(f"--data {path}: no dataset found here (looked for a data.yaml, COCO JSON files, VOC "
                        f"ImageSets/Main lists, and images with VOC XML beside them); see docs/data.md for the layouts")
    if len(candidates) > 1:
        raise DataError(f"--data {path}: could be {' or '.join(found.what for found in candidates)}; give the file "
                        f"or folder of the one to use, or --config with data.format")
    return candidates[0]


def _from_file(path: Path) -> FoundData:
    if path.suffix in (".yaml", ".yml"):
        return _yolo(path)
    if path.suffix == ".json":
        # Its images: beside it, or for COCO's own layout (annotations/instances_<split>.json) in <split>/.
        root, image_dir = path.parent, path.parent
        if path.parent.name == "annotations":
            root = path.parent.parent
            split_folder = root / path.stem.removeprefix("instances_")
            image_dir = split_folder if split_folder.is_dir() else root
        settings = {"format": "coco", "root": str(root), "annotations": str(path), "image_dir": str(image_dir),
                    "train_split": "train", "val_split": "val", "val_fraction": VAL_FRACTION}
        return FoundData("coco", _with_defaults(settings), f"a COCO annotation file (validation part drawn, "
                                                             f"{VAL_FRACTION:.0%})")
    raise DataError(f"--data {path}: a file here is a YOLO data.yaml or a COCO .json; give a folder otherwise")


def _yolo(data_file: Path) -> FoundData:
    from detect.data.yolo import read_data_file

    spec = read_data_file(data_file)
    val = next((name for name in VAL_NAMES if spec.get(name)), None)
    settings = {"format": "yolo", "root": str(data_file), "train_split": "train", "val_split": val or "val",
                "val_fraction": None if val else VAL_FRACTION}
    return FoundData("yolo", _with_defaults(settings), f"a YOLO data.yaml ({_split_words('train', val)})")


def _find_yolo(folder: Path) -> FoundData | None:
    data_file = next((folder / name for name in DATA_FILES if (folder / name).is_file()), None)
    return _yolo(data_file) if data_file is not None else None


def _find_devkit(folder: Path) -> FoundData | None:
    lists = folder / "ImageSets" / "Main"
    if lists.is_dir():
        names = {path.stem for path in lists.glob("*.txt")}
        return _voc(folder, names, "a VOC devkit")
    years = sorted(child.name for child in folder.iterdir() if (child / "ImageSets" / "Main").is_dir())
    if not years:
        return None
    names = {path.stem for path in (folder / years[0] / "ImageSets" / "Main").glob("*.txt")}
    found = _voc(folder, names, f"a VOCdevkit ({years[0]})")
    prefix = f"{years[0]}/"
    found.settings["train_split"] = prefix + found.settings["train_split"]
    found.settings["val_split"] = prefix + found.settings["val_split"]
    return found


def _voc(folder: Path, names: set[str], what: str) -> FoundData:
    train = next((name for name in TRAIN_NAMES if name in names), None)
    val = next((name for name in (*VAL_NAMES, "test") if name in names and name != train), None)
    if train is None:
        raise DataError(f"--data {folder}: a VOC devkit without a train or trainval list in ImageSets/Main")
    if train == "train" and val is None and "trainval" in names:
        train = "trainval"
    settings = {"format": "voc", "root": str(folder), "train_split": train, "val_split": val or "val",
                "val_fraction": None if val else VAL_FRACTION}
    return FoundData("voc", _with_defaults(settings), f"{what} ({_split_words(train, val)})")


def _find_coco(folder: Path) -> FoundData | None:
    own = sorted((folder / "annotations").glob("instances_*.json")) if (folder / "annotations").is_dir() else []
    if own:
        splits = [path.stem.removeprefix("instances_") for path in own]
        train = next((name for name in splits if name.startswith("train")), splits[0])
        val = next((name for name in splits if name.startswith("val") and name != train), None)
        return _coco(folder, train, val, "a COCO folder")
    exported = [child.name for child in sorted(folder.iterdir()) if (child / "_annotations.coco.json").is_file()]
    if exported:
        train = "train" if "train" in exported else exported[0]
        val = next((name for name in VAL_NAMES if name in exported), None)
        return _coco(folder, train, val, "a Roboflow COCO export")
    return None


def _coco(folder: Path, train: str, val: str | None, what: str) -> FoundData:
    settings = {"format": "coco", "root": str(folder), "train_split": train, "val_split": val or "val",
                "val_fraction": None if val else VAL_FRACTION}
    return FoundData("coco", _with_defaults(settings), f"{what} ({_split_words(train, val)})")


def _find_labelimg(folder: Path) -> FoundData | None:
    """Images with VOC XML beside them (or in an Annotations folder next to theirs), no ImageSets."""
    devkits = [folder, *(child for child in folder.iterdir() if child.is_dir())]
    if any((devkit / "ImageSets").is_dir() for devkit in devkits) or not _has_voc_xml(folder):
        return None  # a devkit's JPEGImages and Annotations are not a labelImg folder
    subfolders = {child.name for child in folder.iterdir() if child.is_dir()}
    train = next((name for name in TRAIN_NAMES if name in subfolders), None)
    val = next((name for name in VAL_NAMES if name in subfolders), None)
    if train is None or val is None:
        train, val = "train", None  # the whole folder is the pool the validation part is drawn from
    settings = {"format": "voc", "root": str(folder), "train_split": train, "val_split": val or "val",
                "val_fraction": None if val else VAL_FRACTION}
    return FoundData("voc", _with_defaults(settings), f"a folder of images and VOC XML ({_split_words(train, val)})")


def _has_voc_xml(folder: Path, most: int = 2000) -> bool:
    """An image with an XML file beside it (or in Annotations/ beside its folder) among the first
    `most` files found under `folder`."""
    for count, path in enumerate(folder.rglob("*")):
        if count >= most:
            return False
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        apart = path.parent.parent / "Annotations" / f"{path.stem}.xml"
        if path.with_suffix(".xml").is_file() or apart.is_file():
            return True
    return False


FINDERS = (_find_yolo, _find_devkit, _find_coco, _find_labelimg)


def _with_defaults(settings: dict) -> dict:
    """What --data sets, with the keys a config written for other data must not keep. A user's data is
    read with data.on_error: skip: a degenerate box or an unreadable image (real datasets have a few)
    is left out, counted and named in train.log, not a stop at the first."""
    return {"classes": None, "split_lists": None, "annotations": None, "image_dir": None, "on_error": "skip",
            **settings}


def _split_words(train: str, val: str | None) -> str:
    return f"{train} / {val}" if val else f"{train}, a validation part of {VAL_FRACTION:.0%} drawn from it"
