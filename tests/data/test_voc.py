from pathlib import Path

import numpy as np
import pytest

from detect.data.box_formats import voc_to_xyxy, xyxy_to_voc
from detect.data.voc import VOCDataset
from detect.errors import DataError
from tests.data.conftest import voc_xml, write_image, write_voc


def kinds(dataset) -> list[tuple[str, str]]:
    return [(problem.severity, problem.kind) for problem in dataset.problems]


def test_voc_to_xyxy_subtracts_one_from_min_corner_and_round_trips():
    voc = np.array([[1, 1, 10, 20], [5.5, 6, 7, 8]], np.float32)
    boxes = voc_to_xyxy(voc)
    np.testing.assert_allclose(boxes, [[0, 0, 10, 20], [4.5, 5, 7, 8]])
    assert boxes.dtype == np.float32
    np.testing.assert_allclose(xyxy_to_voc(boxes), voc)


def test_counts_labels_and_item_contract(voc_root: Path):
    dataset = VOCDataset(voc_root, "train", classes=["cat", "dog"])
    assert len(dataset) == 3 and dataset.class_names == ["cat", "dog"]
    targets = [dataset[i][1] for i in range(3)]
    assert [len(t["labels"]) for t in targets] == [2, 2, 0]
    image, first = dataset[0]
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(first["boxes"], [[0, 0, 10, 10], [4, 5, 30, 40]])
    assert first["boxes"].dtype == np.float32 and first["labels"].dtype == np.int64
    assert first["labels"].tolist() == [1, 2]
    assert first["difficult"].tolist() == [False, True]
    assert first["iscrowd"].tolist() == [False, False]
    assert first["image_id"] == "a" and first["orig_size"].tolist() == [48, 64]
    assert targets[2]["boxes"].shape == (0, 4)
    assert dataset.problems == []


def test_classes_from_xml_sorted_and_difficult_left_out_for_training(voc_root: Path):
    dataset = VOCDataset(voc_root, "train", classes=None, keep_difficult=False)
    assert dataset.class_names == ["cat", "dog"]
    assert dataset[0][1]["labels"].tolist() == [1]  # the difficult dog is left out
    assert VOCDataset(voc_root, "val").class_names == ["dog"]


def test_vocdevkit_layout_concatenates_splits(tmp_path: Path):
    write_voc(tmp_path / "VOC2007", {"x": [("cat", 1, 1, 5, 5)]}, {"trainval": ["x"]})
    write_voc(tmp_path / "VOC2012", {"y": [("dog", 1, 1, 5, 5)], "z": []}, {"trainval": ["y", "z"]})
    dataset = VOCDataset(tmp_path, "VOC2007/trainval+VOC2012/trainval", classes=["cat", "dog"])
    assert [dataset[i][1]["image_id"] for i in range(len(dataset))] == ["x", "y", "z"]
    assert [dataset[i][1]["labels"].tolist() for i in range(3)] == [[1], [2], []]


def test_missing_split_file_names_the_available_splits(voc_root: Path):
    with pytest.raises(DataError, match=r"test\.txt: VOC split file not found \(splits there: train, val\)"):
        VOCDataset(voc_root, "test")


def test_unknown_class_raises_naming_file_and_name_or_is_skipped(voc_root: Path):
    with pytest.raises(DataError, match=r"a\.xml: class 'dog' is not in data\.classes"):
        VOCDataset(voc_root, "train", classes=["cat"])
    dataset = VOCDataset(voc_root, "train", classes=["cat"], unknown_class="skip")
    assert [len(dataset[i][1]["labels"]) for i in range(3)] == [1, 1, 0]
    assert kinds(dataset) == [("warning", "unknown_class")] * 2


BAD_XML = {
    "malformed": ("<annotation><object>", "malformed XML", "malformed_annotation"),
    "no_bndbox": ("<annotation><object><name>cat</name></object></annotation>", "missing <bndbox>", "missing_field"),
    "no_name": (voc_xml([("", 1, 1, 5, 5)]), "missing <name>", "missing_field"),
    "no_xmax": (voc_xml([("cat", 1, 1, 5, 5)]).replace("<xmax>5</xmax>", ""), "xmax missing", "missing_field"),
    "degenerate": (voc_xml([("cat", 9, 1, 9, 5)]), "degenerate box xmin=9", "degenerate_box"),
}


@pytest.mark.parametrize("case", sorted(BAD_XML))
def test_bad_annotations_raise_or_are_skipped_and_counted(tmp_path: Path, case: str):
    text, message, kind = BAD_XML[case]
    root = write_voc(tmp_path, {"good": [("cat", 1, 1, 5, 5)], "bad": []}, {"train": ["good", "bad"]})
    (root / "Annotations" / "bad.xml").write_text(text)
    with pytest.raises(DataError, match=message) as error:
        VOCDataset(root, "train", classes=["cat"])
    assert str(error.value).startswith(str(root / "Annotations" / "bad.xml"))
    assert "\n" not in str(error.value)
    dataset = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    assert kinds(dataset) == [("error", kind)]
    assert message in str(dataset.problems[0])
    num_objects = sum(len(dataset[i][1]["labels"]) for i in range(len(dataset)))
    assert num_objects == 1


def test_missing_image_and_annotation(tmp_path: Path):
    root = write_voc(tmp_path, {"good": [], "noimg": [], "noxml": []}, {"train": ["good", "noimg", "noxml"]})
    (root / "JPEGImages" / "noimg.jpg").unlink()
    (root / "Annotations" / "noxml.xml").unlink()
    with pytest.raises(DataError, match=r"noimg\.jpg: image file not found"):
        VOCDataset(root, "train", classes=["cat"])
    dataset = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    assert len(dataset) == 1
    assert sorted(kinds(dataset)) == [("error", "missing_annotation"), ("error", "missing_image")]


def test_boxes_outside_image_are_clipped_and_counted(tmp_path: Path):
    objects = [("cat", -5, 1, 10, 10), ("cat", 60, 40, 90, 70), ("cat", 100, 1, 120, 10), ("cat", 2, 2, 4, 4)]
    root = write_voc(tmp_path, {"a": objects}, {"train": ["a"]})
    with pytest.raises(DataError, match=r"a\.xml: object 2 box \(99, 0, 120, 10\) .*lies outside the 64x48 image"):
        VOCDataset(root, "train", classes=["cat"])[0]
    dataset = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    image, target = dataset[0]
    np.testing.assert_allclose(target["boxes"], [[0, 0, 10, 10], [59, 39, 64, 48], [1, 1, 4, 4]])
    assert sorted(kinds(dataset)) == [("error", "box_outside"), ("warning", "clipped_box"), ("warning", "clipped_box")]
    dataset[0]  # reading again reports nothing new
    assert len(dataset.problems) == 3


def test_annotated_size_disagreeing_with_pixels_trusts_pixels(tmp_path: Path):
    root = write_voc(tmp_path, {"a": [("cat", 1, 1, 30, 30)]}, {"train": ["a"]})
    write_image(root / "JPEGImages" / "a.jpg", 20, 25)  # the XML still says 64x48
    dataset = VOCDataset(root, "train", classes=["cat"])
    image, target = dataset[0]
    assert image.shape[:2] == (20, 25) and target["orig_size"].tolist() == [20, 25]
    np.testing.assert_allclose(target["boxes"], [[0, 0, 25, 20]])
    assert ("warning", "size_mismatch") in kinds(dataset)
    assert "annotated size 64x48 (w x h) differs from the image's 25x20" in str(dataset.problems[0])


def test_unreadable_image_raises_or_next_good_sample_is_returned(tmp_path: Path):
    root = write_voc(tmp_path, {"a": [], "b": [("cat", 1, 1, 5, 5)]}, {"train": ["a", "b"]})
    truncated = root / "JPEGImages" / "a.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated JPEG") as error:
        VOCDataset(root, "train", classes=["cat"])[0]
    assert str(error.value).startswith(str(truncated))
    dataset = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    assert dataset[0][1]["image_id"] == "b"
    assert kinds(dataset) == [("error", "unreadable_image")]
    assert str(dataset.problems[0]).startswith(f"error: {truncated}: truncated JPEG (no end-of-image marker)")


def test_other_image_formats_and_grayscale_are_read(tmp_path: Path):
    root = write_voc(tmp_path, {"a": [("cat", 1, 1, 5, 5)]}, {"train": ["a"]})
    (root / "JPEGImages" / "a.jpg").unlink()
    import cv2

    gray = np.full((48, 64), 77, np.uint8)
    cv2.imwrite(str(root / "JPEGImages" / "a.png"), gray)
    image, target = VOCDataset(root, "train", classes=["cat"])[0]
    assert image.shape == (48, 64, 3) and (image == 77).all()


def test_dataset_works_in_a_dataloader_worker_and_skips_there(tmp_path: Path):
    import torch

    root = write_voc(tmp_path, {"a": [], "b": [("cat", 1, 1, 5, 5)], "c": []}, {"train": ["a", "b", "c"]})
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    dataset = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1, collate_fn=list)
    (batch,) = list(loader)
    assert [target["image_id"] for _, target in batch] == ["b", "b", "c"]  # a bad sample gives the next good one
