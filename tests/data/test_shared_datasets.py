"""The loaders on the real datasets in ../shared/data (skipped where absent)."""

import numpy as np

from detect.data.check import scan_dataset
from detect.data.coco import COCODataset
from detect.data.voc import VOCDataset


def test_raccoon_counts(shared_dataset):
    root = shared_dataset("raccoon")
    for split, num_images, num_objects in (("train", 160, 173), ("val", 40, 44)):
        report = scan_dataset(VOCDataset(root, split, classes=["raccoon"]), split)
        assert (report.num_images, sum(report.objects_per_class.values())) == (num_images, num_objects)
        assert report.problems == []


def test_bccd_reports_its_two_degenerate_boxes_by_file(shared_dataset):
    root = shared_dataset("bccd")
    problems = []
    for split in ("train", "val"):
        dataset = VOCDataset(root, split, classes=["RBC", "WBC", "Platelets"], on_error="skip")
        problems += scan_dataset(dataset, split).problems
    assert [(p.kind, p.file) for p in problems] == [
        ("degenerate_box", str(root / "Annotations" / "BloodImage_00343.xml")),
        ("degenerate_box", str(root / "Annotations" / "BloodImage_00338.xml")),
    ]


def test_coco128_counts_and_labels(shared_dataset):
    root = shared_dataset("coco128")
    for split, num_objects, num_empty in (("train2017", 929, 2), ("val2017", 898, 0)):
        dataset = COCODataset(root, split)
        assert len(dataset) == 128 and len(dataset.class_names) == 80
        assert dataset.category_ids[0] == 1 and dataset.category_ids[-1] == 90
        labels = [sample.labels for sample in dataset.samples]
        assert sum(map(len, labels)) == num_objects
        assert sum(len(image_labels) == 0 for image_labels in labels) == num_empty
        every_label = np.concatenate(labels)
        assert every_label.min() >= 1 and every_label.max() <= 80
    report = scan_dataset(COCODataset(root, "val2017"), "val2017")
    assert report.problems == [] and sum(report.objects_per_class.values()) == 898
