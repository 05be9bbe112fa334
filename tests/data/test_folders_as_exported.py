"""Datasets as users have them train and evaluate through the CLI: a labelImg folder (XML beside the
images, or in Annotations/ next to them, split by train/ and val/ folders) and a Roboflow COCO export
(`<split>/_annotations.coco.json` beside its images, with the group category Roboflow puts first)."""

from __future__ import annotations

import json
import shutil

import pytest

from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.errors import DataError
from tests.engine.test_eval_checks import TINY, run, sets


def labelimg_folder(tmp_path):
    """train/: images with their XML beside them; val/: JPEGImages/ and Annotations/ side by side."""
    source = tmp_path / "voc"
    generate_synthetic(source, format="voc", num_images=12, image_size=64, seed=3, val_fraction=0.5)
    root = tmp_path / "labelimg"
    for split in ("train", "val"):
        for image_id in (source / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
            images = root / split if split == "train" else root / split / "JPEGImages"
            xmls = root / split if split == "train" else root / split / "Annotations"
            images.mkdir(parents=True, exist_ok=True)
            xmls.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / "JPEGImages" / f"{image_id}.jpg", images)
            shutil.copy(source / "Annotations" / f"{image_id}.xml", xmls)
    return root


def roboflow_folder(tmp_path):
    source = tmp_path / "coco"
    generate_synthetic(source, format="coco", num_images=12, image_size=64, seed=3, val_fraction=0.5)
    root = tmp_path / "roboflow"
    for split in ("train", "val"):
        shutil.copytree(source / split, root / split)
        data = json.loads((source / "annotations" / f"instances_{split}.json").read_text())
        data["categories"] = [{"id": 0, "name": "shapes", "supercategory": "none"}] + [
            {**category, "supercategory": "shapes"} for category in data["categories"]]
        (root / split / "_annotations.coco.json").write_text(json.dumps(data))
    return root


def test_a_labelimg_folder_reads_as_the_devkit_it_came_from(tmp_path):
    root = labelimg_folder(tmp_path)
    devkit = build_dataset(DataConfig(format="voc", root=str(tmp_path / "voc"), classes=SYNTHETIC_CLASSES), "val")
    flat = build_dataset(DataConfig(format="voc", root=str(root), classes=SYNTHETIC_CLASSES), "val")
    assert [s.image_id for s in flat.samples] == [f"JPEGImages/{s.image_id}" for s in devkit.samples]
    for ours, theirs in zip(flat.samples, devkit.samples, strict=True):
        assert ours.labels.tolist() == theirs.labels.tolist() and ours.boxes.tolist() == theirs.boxes.tolist()
    (root / "val" / "JPEGImages" / "stray.jpg").write_bytes((root / "train").glob("*.jpg").__next__().read_bytes())
    stray = build_dataset(DataConfig(format="voc", root=str(root), classes=SYNTHETIC_CLASSES), "val")
    assert len(stray) == len(flat) + 1 and len(stray.samples[-1].labels) == 0  # no XML: no objects
    with pytest.raises(DataError, match=r"no ImageSets/Main split lists and no 'test' folder \(folders there: "
                                        r"train, val\)"):
        build_dataset(DataConfig(format="voc", root=str(root)), "test")


def test_a_roboflow_export_reads_without_its_group_category(tmp_path):
    root = roboflow_folder(tmp_path)
    dataset = build_dataset(DataConfig(format="coco", root=str(root)), "train")
    assert dataset.class_names == SYNTHETIC_CLASSES and dataset.image_dir == root / "train"
    assert dataset.annotation_file == root / "train" / "_annotations.coco.json"
    by_path = build_dataset(DataConfig(format="coco", root=str(tmp_path / "elsewhere"),
                                       annotations={"train": str(root / "train" / "_annotations.coco.json")}),
                            "train")
    assert [s.boxes.tolist() for s in by_path.samples] == [s.boxes.tolist() for s in dataset.samples]


@pytest.mark.parametrize("make, data_format", [(labelimg_folder, "voc"), (roboflow_folder, "coco")])
def test_each_trains_an_epoch_and_evaluates_through_the_cli(tmp_path, capsys, make, data_format):
    root = make(tmp_path)
    run_dir = tmp_path / "run"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *sets(f"data.format={data_format}", f"data.root={root}", *TINY)], capsys)
    assert code == 0, err
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", str(run_dir / "last.pt"), "--metric", "all", "--device", "cpu", "--json",
                          str(out_json)], capsys)
    assert code == 0, err
    results = json.loads(out_json.read_text())
    assert results["num_images"] == 6 and set(results["voc07"]["ap"]) == set(SYNTHETIC_CLASSES)
    assert results["coco"]["AP50"] is not None
