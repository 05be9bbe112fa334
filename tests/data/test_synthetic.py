import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from detect.data.coco import COCODataset
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic, visible_boxes
from detect.data.voc import VOCDataset

NUM_IMAGES, SIZE = 30, 96


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def voc_synth(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "voc"
    return root, generate_synthetic(root, "voc", num_images=NUM_IMAGES, image_size=SIZE, seed=3, val_fraction=0.2)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, voc_synth):
    root, _ = voc_synth
    generate_synthetic(tmp_path / "again", "voc", num_images=NUM_IMAGES, image_size=SIZE, seed=3, val_fraction=0.2)
    generate_synthetic(tmp_path / "other", "voc", num_images=NUM_IMAGES, image_size=SIZE, seed=4, val_fraction=0.2)
    assert all_bytes(root) == all_bytes(tmp_path / "again")
    assert all_bytes(root) != all_bytes(tmp_path / "other")


def test_voc_layout_counts_and_boxes(voc_synth):
    root, summary = voc_synth
    assert summary["num_images"] == NUM_IMAGES and (summary["num_train"], summary["num_val"]) == (24, 6)
    assert summary["classes"] == SYNTHETIC_CLASSES and len(SYNTHETIC_CLASSES) >= 5
    ids = {split: (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split() for split in ("train", "val")}
    assert len(ids["train"]) == 24 and len(ids["val"]) == 6 and not set(ids["train"]) & set(ids["val"])
    num_objects, num_empty = 0, 0
    for xml_path in sorted((root / "Annotations").glob("*.xml")):
        annotation = ET.parse(xml_path).getroot()  # a plain XML parser reads it
        assert (root / "JPEGImages" / f"{xml_path.stem}.jpg").is_file()
        objects = annotation.findall("object")
        num_objects += len(objects)
        num_empty += not objects
        for obj in objects:
            assert obj.findtext("name") in SYNTHETIC_CLASSES
            xmin, ymin, xmax, ymax = (int(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin < xmax <= SIZE and 1 <= ymin < ymax <= SIZE  # VOC 1-based, inside, positive area
    assert num_objects == summary["num_objects"] > 0
    assert num_empty >= 1  # images without objects exist (about 1 in 10; seed 3 gives some)


def test_voc_files_load_without_problems(voc_synth):
    root, summary = voc_synth
    total = 0
    for split in ("train", "val"):
        dataset = VOCDataset(root, split, classes=SYNTHETIC_CLASSES)
        for index in range(len(dataset)):
            image, target = dataset[index]
            assert image.shape == (SIZE, SIZE, 3)
            total += len(target["labels"])
        assert dataset.problems == []
    assert total == summary["num_objects"]


def test_coco_layout_readable_by_pycocotools(tmp_path: Path):
    summary = generate_synthetic(tmp_path, "coco", num_images=20, image_size=64, seed=0, val_fraction=0.25)
    total = 0
    for split, count in (("train", 15), ("val", 5)):
        coco = COCO(str(tmp_path / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == SYNTHETIC_CLASSES
        for annotation in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = annotation["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
            assert 0 < annotation["area"] <= w * h
        for image in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / split / image["file_name"]).is_file()
        total += len(coco.getAnnIds())
        assert COCODataset(tmp_path, split).problems == []
    assert total == summary["num_objects"]


def test_boxes_are_tight_around_visible_pixels():
    owner = np.full((10, 12), -1, np.int16)
    owner[2:5, 3:9] = 0
    owner[4:8, 1:4] = 1  # covers a corner of object 0: object 0's box still spans its visible pixels
    boxes, areas = visible_boxes(owner, 2)
    np.testing.assert_array_equal(boxes, [[3, 2, 9, 5], [1, 4, 4, 8]])
    assert areas.tolist() == [17, 12]


def test_many_shapes_vary_in_size_and_class(tmp_path: Path):
    root = tmp_path / "many"
    generate_synthetic(root, "voc", num_images=40, image_size=200, seed=0, val_fraction=0.0)
    dataset = VOCDataset(root, "train", classes=SYNTHETIC_CLASSES)
    targets = [dataset[i][1] for i in range(len(dataset))]
    labels = np.concatenate([t["labels"] for t in targets])
    boxes = np.concatenate([t["boxes"] for t in targets])
    assert set(labels.tolist()) == set(range(1, 6))
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 200
    assert sides.min() < 0.1 and sides.max() > 0.4
    overlapping = 0
    for t in targets:
        b = t["boxes"]
        ix = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        iy = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        overlapping += int(((ix > 0) & (iy > 0)).sum() - len(b)) // 2
    assert overlapping > 0
