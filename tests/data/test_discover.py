"""`--data PATH`: each form users have is found from its files, with its splits; a folder that could be
several forms, or none, is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detect.data.discover import VAL_FRACTION, discover_data
from detect.data.synthetic import generate_synthetic
from detect.errors import DataError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """The same 10 synthetic images in the three layouts detect data synth -o writes."""
    folder = tmp_path_factory.mktemp("forms")
    for form in ("voc", "coco", "yolo"):
        generate_synthetic(folder / form, format=form, num_images=10, image_size=32)
    return {form: folder / form for form in ("voc", "coco", "yolo")}


def test_a_voc_devkit(shapes):
    found = discover_data(shapes["voc"])
    assert (found.format, found.settings["train_split"], found.settings["val_split"]) == ("voc", "train", "val")
    assert found.settings["val_fraction"] is None and found.settings["classes"] is None
    assert found.settings["on_error"] == "skip"  # a bad object of a user's data is left out and counted
    assert found.what == "a VOC devkit (train / val)"


def test_a_vocdevkit_of_years(shapes, tmp_path):
    shutil.copytree(shapes["voc"], tmp_path / "VOCdevkit" / "VOC2007")
    found = discover_data(tmp_path / "VOCdevkit")
    assert (found.settings["train_split"], found.settings["val_split"]) == ("VOC2007/train", "VOC2007/val")


def test_a_yolo_data_yaml_or_its_folder(shapes):
    for path in (shapes["yolo"], shapes["yolo"] / "data.yaml"):
        found = discover_data(path)
        assert (found.format, found.settings["root"]) == ("yolo", str(shapes["yolo"] / "data.yaml"))
        assert found.settings["val_split"] == "val" and found.settings["val_fraction"] is None


def test_a_coco_folder_and_one_coco_file(shapes):
    found = discover_data(shapes["coco"])
    assert (found.format, found.settings["train_split"], found.settings["val_split"]) == ("coco", "train", "val")
    one_file = shapes["coco"] / "annotations" / "instances_train.json"
    found = discover_data(one_file)
    assert found.settings["annotations"] == str(one_file) and found.settings["val_fraction"] == VAL_FRACTION


def test_a_roboflow_coco_export(shapes, tmp_path):
    for split, source in (("train", "train"), ("valid", "val")):
        shutil.copytree(shapes["coco"] / source, tmp_path / split)
        shutil.copy(shapes["coco"] / "annotations" / f"instances_{source}.json",
                    tmp_path / split / "_annotations.coco.json")
    found = discover_data(tmp_path)
    assert (found.format, found.settings["train_split"], found.settings["val_split"]) == ("coco", "train", "valid")
    assert found.what.startswith("a Roboflow COCO export")


def test_a_labelimg_folder_with_and_without_split_folders(shapes, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted((shapes["voc"] / "JPEGImages").iterdir())[:4]:
        shutil.copy(image, flat / image.name)
        shutil.copy(shapes["voc"] / "Annotations" / f"{image.stem}.xml", flat / f"{image.stem}.xml")
    found = discover_data(flat)
    assert (found.format, found.settings["val_fraction"]) == ("voc", VAL_FRACTION)
    split = tmp_path / "split"
    shutil.copytree(flat, split / "train")
    shutil.copytree(flat, split / "valid")
    found = discover_data(split)
    assert (found.settings["train_split"], found.settings["val_split"], found.settings["val_fraction"]) == (
        "train", "valid", None)


def test_an_ambiguous_folder_and_an_empty_one_are_one_line(shapes, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(shapes["voc"], both)
    shutil.copy(shapes["yolo"] / "data.yaml", both / "data.yaml")
    with pytest.raises(DataError, match=r"could be a YOLO data.yaml .* or a VOC devkit"):
        discover_data(both)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset found here"):
        discover_data(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file or folder"):
        discover_data(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text(json.dumps({}))
    with pytest.raises(DataError, match="a file here is a YOLO data.yaml or a COCO .json"):
        discover_data(tmp_path / "notes.txt")
