"""What the annotation files say is what the dataset holds: no class dropped for its supercategory,
no two classes merged under one name, `<difficult>` read in every common spelling (and refused in the
others), an image listed twice read once, and a data.yaml `path` that is not a folder one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.errors import DataError
from tests.data.conftest import coco_json, write_image, write_voc


def coco_split(root: Path, split: str = "train", **data):
    return build_dataset(DataConfig(format="coco", root=str(root), **data), split)


def test_a_class_that_is_its_own_supercategory_is_kept_without_training_objects(tmp_path):
    """Many exporters write each class as its own supercategory: a class with no objects in a split is
    still a class (its objects may all be in val), not a group to drop."""
    root = tmp_path / "coco"
    write_image(root / "train" / "1.jpg", 48, 64)
    categories = [{"id": 1, "name": "cat", "supercategory": "cat"}, {"id": 2, "name": "owl", "supercategory": "owl"}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0}]
    images = [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 48}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco_json(images, annotations, categories)))
    assert coco_split(root).class_names == ["cat", "owl"]


def test_roboflows_group_category_is_dropped_and_said(tmp_path):
    root = tmp_path / "rf"
    write_image(root / "train" / "1.jpg", 48, 64)
    categories = [{"id": 0, "name": "animals", "supercategory": "none"},
                  {"id": 1, "name": "cat", "supercategory": "animals"},
                  {"id": 2, "name": "dog", "supercategory": "animals"}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0}]
    images = [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 48}]
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(coco_json(images, annotations, categories)))
    dataset = coco_split(root)
    assert dataset.class_names == ["cat", "dog"]
    assert [problem.message for problem in dataset.problems] == [
        "category 'animals' (id 0) names a group of the others and has no objects: not read as a class"]


def yolo_folder(root: Path, data_yaml: str, list_lines: list[str] | None = None) -> Path:
    for index in range(2):
        write_image(root / "images" / f"{index}.jpg", 32, 32, seed=index)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{index}.txt").write_text(f"{index} 0.5 0.5 0.4 0.4\n")
    if list_lines is not None:
        (root / "train.txt").write_text("".join(f"{line}\n" for line in list_lines))
    (root / "data.yaml").write_text(data_yaml)
    return root


def test_two_classes_of_one_name_are_refused(tmp_path):
    root = yolo_folder(tmp_path, "train: images\nval: images\nnames: [cell, cell]\n")
    with pytest.raises(DataError, match=r"data.yaml: names gives 'cell' to the ids 0, 1; each class needs a name"):
        build_dataset(DataConfig(format="yolo", root=str(root)), "train")


def test_an_image_listed_twice_is_read_once(tmp_path):
    root = yolo_folder(tmp_path, "train: train.txt\nval: images\nnames: [a, b]\n",
                       ["./images/0.jpg", "./images/1.jpg", "./images/0.jpg", "./images/0.jpg"])
    dataset = build_dataset(DataConfig(format="yolo", root=str(root)), "train")
    assert len(dataset) == 2
    assert "split 'train' lists 2 images more than once; each is read once" in dataset.problems[0].message


@pytest.mark.parametrize("path", ["5", "[a, b]"])
def test_a_data_yaml_path_that_is_not_a_folder_name_is_one_line(tmp_path, path):
    root = yolo_folder(tmp_path, f"path: {path}\ntrain: images\nval: images\nnames: [a, b]\n")
    with pytest.raises(DataError, match="data.yaml: path must be a folder"):
        build_dataset(DataConfig(format="yolo", root=str(root)), "train")


@pytest.mark.parametrize("text, difficult", [("1", True), ("yes", True), ("TRUE", True), ("1.0", True),
                                             ("0", False), ("no", False), ("False", False), ("", False)])
def test_difficult_in_its_common_spellings(tmp_path, text, difficult):
    root = write_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 10, 10, text)]}, {"train": ["a"]})
    [sample] = build_dataset(DataConfig(format="voc", root=str(root)), "train").samples
    assert sample.difficult.tolist() == [difficult]


@pytest.mark.parametrize("text", ["2", "maybe", "-1"])
def test_other_difficult_values_are_refused_by_object(tmp_path, text):
    root = write_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 10, 10, text)]}, {"train": ["a"]})
    with pytest.raises(DataError, match=rf"a.xml: object 0 \(cat\): <difficult> is '{text}'; write 0 or 1"):
        build_dataset(DataConfig(format="voc", root=str(root)), "train")
