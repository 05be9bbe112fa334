"""detect data convert: round trips within each format's precision, flags kept where the target has them and
counted where it has not, classes and splits kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.cli import main
from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.data.convert import convert_dataset
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.errors import DataError, DetectError


def voc_with_difficult(tmp_path):
    root = tmp_path / "voc"
    generate_synthetic(root, format="voc", num_images=10, image_size=64, seed=2, val_fraction=0.4)
    for index, xml in enumerate(sorted((root / "Annotations").glob("*.xml"))):
        if index % 3 == 0:  # mark every third image's first object difficult
            xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    return DataConfig(format="voc", root=str(root), classes=SYNTHETIC_CLASSES)


def coco_with_crowd(tmp_path):
    root = tmp_path / "coco"
    generate_synthetic(root, format="coco", num_images=10, image_size=64, seed=2, val_fraction=0.4)
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        data = json.loads(path.read_text())
        for annotation in data["annotations"][::4]:
            annotation["iscrowd"] = 1
            x, y, w, h = annotation["bbox"]
            annotation["bbox"] = [x + 0.123456, y + 0.123456, w - 0.25, h - 0.25]  # not whole pixels, inside
        path.write_text(json.dumps(data))
    return DataConfig(format="coco", root=str(root))


def read(data_cfg, split):
    return build_dataset(data_cfg, split, training=False)


def assert_same(ours, theirs, atol, flags=("difficult", "iscrowd")):
    assert ours.class_names == theirs.class_names and len(ours) == len(theirs)
    for a, b in zip(ours.samples, theirs.samples, strict=True):
        assert a.labels.tolist() == b.labels.tolist()
        np.testing.assert_allclose(a.boxes, b.boxes, atol=atol, rtol=0)
        for flag in flags:
            assert getattr(a, flag).tolist() == getattr(b, flag).tolist(), flag


def test_voc_to_coco_to_voc_gives_the_same_xml_boxes(tmp_path):
    source = voc_with_difficult(tmp_path)
    summary = convert_dataset(source, ["train", "val"], tmp_path / "as_coco", "coco")
    assert summary["dropped_flags"] == {"difficult": sum(int(s.difficult.sum()) for split in ("train", "val")
                                                         for s in read(source, split).samples)}
    as_coco = DataConfig(format="coco", root=str(tmp_path / "as_coco"))
    back = DataConfig(format="voc", root=str(tmp_path / "back"), classes=SYNTHETIC_CLASSES)
    convert_dataset(as_coco, ["train", "val"], tmp_path / "back", "voc")
    for split in ("train", "val"):
        assert_same(read(back, split), read(source, split), atol=0, flags=())
    original = sorted((tmp_path / "voc" / "Annotations").glob("*.xml"))[1].read_text()
    converted = (tmp_path / "back" / "Annotations" / sorted((tmp_path / "voc" / "Annotations").glob("*.xml"))[1].name)
    for key in ("xmin", "ymin", "xmax", "ymax"):  # the same integers, written as integers
        assert [part.split("<")[0] for part in original.split(f"<{key}>")[1:]] == \
               [part.split("<")[0] for part in converted.read_text().split(f"<{key}>")[1:]]


def test_voc_to_yolo_to_voc_within_half_a_pixel_and_difficult_kept_to_voc(tmp_path):
    source = voc_with_difficult(tmp_path)
    convert_dataset(source, ["train", "val"], tmp_path / "as_voc", "voc")
    assert_same(read(DataConfig(format="voc", root=str(tmp_path / "as_voc"), classes=SYNTHETIC_CLASSES), "val"),
                read(source, "val"), atol=0)  # VOC to VOC keeps difficult
    convert_dataset(source, ["train", "val"], tmp_path / "as_yolo", "yolo")
    convert_dataset(DataConfig(format="yolo", root=str(tmp_path / "as_yolo")), ["train", "val"], tmp_path / "back",
                    "voc")
    back = DataConfig(format="voc", root=str(tmp_path / "back"), classes=SYNTHETIC_CLASSES)
    assert_same(read(back, "train"), read(source, "train"), atol=0.5, flags=())


def test_coco_to_yolo_to_coco_within_a_millionth_of_the_image_and_crowd_kept_to_coco(tmp_path, capsys):
    source = coco_with_crowd(tmp_path)
    convert_dataset(source, ["train"], tmp_path / "as_coco", "coco")
    assert_same(read(DataConfig(format="coco", root=str(tmp_path / "as_coco")), "train"), read(source, "train"),
                atol=1e-4)  # COCO to COCO keeps iscrowd
    with pytest.raises(SystemExit) as exited:
        main(["data", "convert", "-o", str(tmp_path / "as_yolo"), "--config", "synthetic_ssd", "--format", "yolo",
              "--set", "data.format=coco", "--set", f"data.root={tmp_path / 'coco'}", "--set", "data.classes=null"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert "(yolo; 5 classes; train: 6 images" in out and "objects marked iscrowd written as ordinary" in out
    convert_dataset(DataConfig(format="yolo", root=str(tmp_path / "as_yolo")), ["train", "val"], tmp_path / "back",
                    "coco")
    assert_same(read(DataConfig(format="coco", root=str(tmp_path / "back")), "val"), read(source, "val"),
                atol=1e-6 * 64 + 1e-5, flags=())
    with pytest.raises(DetectError, match="not empty"):
        convert_dataset(source, ["train"], tmp_path / "back", "voc")
    with pytest.raises(DataError, match="--to tfrecord: choose from voc, coco, yolo"):
        convert_dataset(source, ["train"], tmp_path / "other", "tfrecord")


def test_a_link_whose_image_moved_is_named_as_a_link(tmp_path, capsys):
    source, linked = tmp_path / "shapes", tmp_path / "linked"
    generate_synthetic(source, format="yolo", num_images=5, image_size=32)
    convert_dataset(DataConfig(format="yolo", root=str(source)), ["train", "val"], linked, "voc")
    source.rename(tmp_path / "moved")
    with pytest.raises(SystemExit):
        main(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=voc", "--set", f"data.root={linked}",
              "--split", "train"])
    out = capsys.readouterr().out
    assert f"a link to {source}" in out and "which is not there (the images it linked to moved or were deleted" in out


def test_convert_onto_a_file_or_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    source = tmp_path / "shapes"
    generate_synthetic(source, format="voc", num_images=5, image_size=32)
    args = ["data", "convert", "--config", "synthetic_ssd", "--set", f"data.root={source}", "--format", "yolo"]
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    with pytest.raises(SystemExit) as exited:
        main([*args[:2], "-o", str(blocker), *args[2:]])
    assert exited.value.code == 2 and f"convert {blocker}: is a file" in capsys.readouterr().err
    assert blocker.read_text() == "mine"

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("detect.data.convert.os.symlink", full)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main([*args[:2], "-o", str(out), *args[2:]])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and f"no space left on {tmp_path}: out not written" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file", "shapes"]
