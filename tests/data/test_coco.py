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
    with pytest.raises(DataError, match=r"instances_val\.json: COCO annotation file not found \(there: instances_train\.json\)"):
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
