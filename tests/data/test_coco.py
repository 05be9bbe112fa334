import json
from pathlib import Path

import numpy as np
import pytest

from detect.data.coco import CategoryMap, COCODataset
from detect.errors import DataError


def rewrite(root: Path, change) -> Path:
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_category_map_round_trip_with_gapped_ids():
    mapping = CategoryMap([3, 7, 9, 90])
    labels = mapping.category_ids_to_labels([90, 3, 9, 7])
    assert labels.tolist() == [4, 1, 3, 2]
    assert mapping.labels_to_category_ids(labels).tolist() == [90, 3, 9, 7]
    assert mapping.category_ids_to_labels([5, 200]).tolist() == [0, 0]
    with pytest.raises(ValueError):
        mapping.labels_to_category_ids([0])


def test_counts_labels_crowd_and_empty_images(coco_root: Path):
    dataset = COCODataset(coco_root, "train")
    assert dataset.class_names == ["cat", "dog", "bird"]  # categories sorted by id: 3, 7, 9
    assert dataset.category_ids == [3, 7, 9]
    assert len(dataset) == 3
    targets = [dataset[i][1] for i in range(3)]
    assert [t["image_id"] for t in targets] == [10, 11, 12]
    assert [len(t["labels"]) for t in targets] == [2, 2, 0]
    first = targets[0]
    np.testing.assert_allclose(first["boxes"], [[1, 2, 11, 22], [5, 5, 10, 10]])
    assert first["labels"].tolist() == [2, 1]
    assert first["iscrowd"].tolist() == [False, True]
    assert first["difficult"].tolist() == [False, False]
    assert first["orig_size"].tolist() == [48, 64]
    assert dataset.category_map.labels_to_category_ids(targets[1]["labels"]).tolist() == [9, 3]
    assert len(dataset.coco.getAnnIds()) == 4  # pycocotools index for evaluation
    assert dataset.problems == []


def test_classes_filter_orders_labels_and_drops_others(coco_root: Path):
    dataset = COCODataset(coco_root, "train", classes=["dog", "cat"])
    assert dataset.class_names == ["dog", "cat"] and dataset.category_ids == [7, 3]
    assert [dataset[i][1]["labels"].tolist() for i in range(3)] == [[1, 2], [2], []]
    with pytest.raises(DataError, match="data.classes names horse not among its categories"):
        COCODataset(coco_root, "train", classes=["horse"])


def test_explicit_image_dir(coco_root: Path):
    (coco_root / "train").rename(coco_root / "pictures")
    dataset = COCODataset(coco_root, "train", image_dir=coco_root / "pictures")
    assert dataset[0][0].shape == (48, 64, 3)


def test_missing_annotation_file_lists_what_is_there(coco_root: Path):
    with pytest.raises(
        DataError, match=r"instances_val\.json: COCO annotation file not found \(there: instances_train\.json\)"):
        COCODataset(coco_root, "val")


def test_malformed_json_names_file_and_line(coco_root: Path):
    path = coco_root / "annotations" / "instances_train.json"
    path.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"instances_train\.json: malformed JSON at line 2") as error:
        COCODataset(coco_root, "train")
    assert "\n" not in str(error.value)


def test_missing_top_level_field(coco_root: Path):
    rewrite(coco_root, lambda data: data.pop("categories"))
    with pytest.raises(DataError, match="missing or non-list field 'categories'"):
        COCODataset(coco_root, "train")


def _drop_bbox(data):
    del data["annotations"][0]["bbox"]


def _zero_width(data):
    data["annotations"][0]["bbox"] = [1, 2, 0, 20]


def _unknown_image(data):
    data["annotations"][0]["image_id"] = 99


def _image_without_file_name(data):
    del data["images"][2]["file_name"]


@pytest.mark.parametrize(
    "change, message, kind, num_images, num_objects",
    [
        (_drop_bbox, "annotation id 1: missing field bbox", "missing_field", 3, 3),
        (_zero_width, r"annotation id 1 \(image id 10\): degenerate box \[1, 2, 0, 20\]", "degenerate_box", 3, 3),
        (_unknown_image, "annotation id 1: image_id 99 is not in images", "missing_field", 3, 3),
        (_image_without_file_name, r"images\[2\] lacks 'id' or 'file_name'", "missing_field", 2, 4),
    ],
)
def test_bad_annotations_raise_or_are_skipped_and_counted(coco_root, change, message, kind, num_images, num_objects):
    path = rewrite(coco_root, change)
    with pytest.raises(DataError, match=message) as error:
        COCODataset(coco_root, "train")
    assert str(error.value).startswith(str(path))
    dataset = COCODataset(coco_root, "train", on_error="skip")
    assert [(p.severity, p.kind) for p in dataset.problems] == [("error", kind)]
    assert len(dataset) == num_images
    assert sum(len(dataset[i][1]["labels"]) for i in range(len(dataset))) == num_objects


def test_box_outside_image_is_clipped_and_reported_by_image(coco_root: Path):
    rewrite(coco_root, lambda data: data["annotations"][0].update(bbox=[50, 40, 30, 30]))
    dataset = COCODataset(coco_root, "train")
    np.testing.assert_allclose(dataset[0][1]["boxes"][0], [50, 40, 64, 48])
    (problem,) = dataset.problems
    assert problem.kind == "clipped_box" and "image id 10, 10.jpg" in problem.file


def _file_name_up(data):
    data["images"][1]["file_name"] = "../outside.jpg"


def _file_name_absolute(data):
    data["images"][1]["file_name"] = "/etc/hostname"


def _duplicate_image_id(data):
    data["images"][2]["id"] = 10  # image 12 has no objects of its own


def _duplicate_annotation_id(data):
    data["annotations"][3]["id"] = 3


def _string_category_id(data):
    data["annotations"][0]["category_id"] = "7"


def _string_image_id(data):
    data["annotations"][0]["image_id"] = "10"


def _string_width(data):
    data["images"][1]["width"] = "64"


@pytest.mark.parametrize(
    "change, message, kind, num_images, num_objects",
    [
        (_file_name_up, r"images\[1\]: image id 11: file_name '../outside.jpg' points outside the image folder",
         "bad_field", 2, 2),
        (_file_name_absolute, r"images\[1\]: image id 11: file_name '/etc/hostname' points outside", "bad_field", 2, 2),
        # Both images of the repeated id are left out: which file the boxes belong to is unknowable.
        (_duplicate_image_id, r"image id 10 is given to 2 images \('10.jpg', '12.jpg'\)", "duplicate_id", 1, 2),
        (_duplicate_annotation_id, r"annotation id 3 is used more than once \(image id 11\)", "duplicate_id", 3, 3),
        (_string_category_id, r"annotations\[0\]: category_id '7': must be a non-negative integer", "bad_field", 3, 3),
        (_string_image_id, r"annotations\[0\]: image_id '10': must be a non-negative integer", "bad_field", 3, 3),
        (_string_width, r"images\[1\]: image id 11: width must be a positive integer, got '64'", "bad_field", 2, 2),
    ],
)
def test_unsafe_repeated_or_mistyped_entries_are_named(coco_root, change, message, kind, num_images, num_objects):
    path = rewrite(coco_root, change)
    with pytest.raises(DataError, match=message) as error:
        COCODataset(coco_root, "train")
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    dataset = COCODataset(coco_root, "train", on_error="skip")
    assert [(p.severity, p.kind) for p in dataset.problems] == [("error", kind)]
    assert len(dataset) == num_images
    assert sum(len(dataset[i][1]["labels"]) for i in range(len(dataset))) == num_objects
    assert all(
        sample.image_path.resolve().is_relative_to((coco_root / "train").resolve()) for sample in dataset.samples)


@pytest.mark.parametrize(
    "categories, message",
    [
        ([{"id": 3, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 9, "name": "bird"}],
         r"categories\[1\]: category id 3 repeats categories\[0\]"),
        ([{"id": 3, "name": "cat"}, {"id": 7, "name": "cat"}, {"id": 9, "name": "bird"}],
         r"categories\[1\] \(id 7\): category name 'cat' repeats categories\[0\]"),
    ],
)
def test_repeated_category_id_or_name_is_an_error(coco_root, categories, message):
    rewrite(coco_root, lambda data: data.update(categories=categories))
    with pytest.raises(DataError, match=message):
        COCODataset(coco_root, "train")
    dataset = COCODataset(coco_root, "train", on_error="skip")
    assert [p.kind for p in dataset.problems if p.severity == "error"][0] in ("duplicate_id", "duplicate_name")
    assert len(set(dataset.class_names)) == len(dataset.class_names)


@pytest.mark.parametrize(
    "categories, message",
    [
        ([], "no categories: a model needs at least one class"),
        ([{"id": "3", "name": "cat"}], r"categories\[0\]: id must be a non-negative integer, got '3'"),
        ([{"id": 3, "name": ""}], r"categories\[0\] \(id 3\): name must be a non-empty string"),
    ],
)
def test_no_or_mistyped_categories_are_refused_in_one_line(coco_root, categories, message):
    rewrite(coco_root, lambda data: data.update(categories=categories, annotations=[]))
    with pytest.raises(DataError, match=message):
        COCODataset(coco_root, "train", on_error="skip")


def test_huge_category_id_allocates_nothing(coco_root):
    def change(data):
        data["categories"][0]["id"] = 10**12  # bird
        data["annotations"][2]["category_id"] = 10**12
    rewrite(coco_root, change)
    dataset = COCODataset(coco_root, "train")
    assert dataset.category_ids == [3, 7, 10**12]
    assert dataset.category_map.category_ids_to_labels([10**12, 5]).tolist() == [3, 0]
    assert dataset[1][1]["labels"].tolist() == [3, 1]


def test_annotation_without_id_gets_a_fresh_one(coco_root):
    rewrite(coco_root, lambda data: data["annotations"][3].pop("id"))
    dataset = COCODataset(coco_root, "train")
    assert sorted(dataset.coco.anns) == [1, 2, 3, 4]
