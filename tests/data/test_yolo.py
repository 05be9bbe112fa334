"""data.format: yolo (Ultralytics' data.yaml layout): the same ground truth as the VOC and COCO forms of the
same data, the data.yaml variants users have, and one line naming the file and line for bad labels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from detect.cli import main
from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.errors import DataError
from detect.text_files import read_json
from tests.conftest import shared_data_dir

COCO128 = shared_data_dir() / "coco128"


def yolo_split(root, split="train", **data):
    return build_dataset(DataConfig(format="yolo", root=str(root), **data), split)


def test_synthetic_yolo_gives_the_voc_ground_truth(tmp_path):
    for layout in ("voc", "yolo"):
        generate_synthetic(tmp_path / layout, format=layout, num_images=12, image_size=64, seed=4)
    voc = build_dataset(DataConfig(format="voc", root=str(tmp_path / "voc"), classes=SYNTHETIC_CLASSES), "val")
    yolo = yolo_split(tmp_path / "yolo", "val")
    assert yolo.class_names == SYNTHETIC_CLASSES and len(yolo) == len(voc) > 0
    for ours, theirs in zip(yolo.samples, voc.samples, strict=True):
        assert ours.image_id == f"images/val/{theirs.image_id}" and ours.annotated_size == (64, 64)
        assert ours.labels.tolist() == theirs.labels.tolist()
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-6 * 64)


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 is not here")
def test_coco128_in_its_published_yolo_form_gives_our_coco_ground_truth(tmp_path):
    """A copy of 24 coco128 images with YOLO labels written as the published ones are (6 decimals, names
    by 0-based id): every box within 1e-6 of the image size of the COCO file's, the same classes."""
    annotations = read_json(COCO128 / "annotations" / "instances_val2017.json", "annotations")
    categories = sorted(annotations["categories"], key=lambda c: c["id"])
    index_of = {category["id"]: index for index, category in enumerate(categories)}
    images = sorted(annotations["images"], key=lambda image: image["id"])[:24]
    (tmp_path / "images" / "val2017").mkdir(parents=True)
    (tmp_path / "labels" / "val2017").mkdir(parents=True)
    for image in images:
        shutil.copy(COCO128 / "val2017" / image["file_name"], tmp_path / "images" / "val2017")
        lines = []
        for entry in (a for a in annotations["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = entry["bbox"]
            lines.append(f"{index_of[entry['category_id']]} {(x + w / 2) / image['width']:.6f} "
                         f"{(y + h / 2) / image['height']:.6f} {w / image['width']:.6f} {h / image['height']:.6f}")
        (tmp_path / "labels" / "val2017" / image["file_name"]).with_suffix(".txt").write_text("\n".join(lines))
    names = "".join(f"  {index}: {category['name']}\n" for index, category in enumerate(categories))
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/val2017\nval: images/val2017\n"
                                        f"names:\n{names}")
    yolo = yolo_split(tmp_path / "data.yaml", "val")
    coco = build_dataset(DataConfig(format="coco", root=str(COCO128)), "val2017")
    by_file = {sample.image_path.name: sample for sample in coco.samples}
    assert yolo.class_names == coco.class_names and len(yolo) == len(images)
    for ours in yolo.samples:
        theirs = by_file[ours.image_path.name]
        height, width = ours.annotated_size
        assert (height, width) == theirs.annotated_size
        assert ours.labels.tolist() == theirs.labels.tolist()
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-6 * max(height, width) + 1e-4)


def _yolo_folder(tmp_path, lines: dict[str, str], names="[a, b]"):
    generate_synthetic(tmp_path / "src", format="yolo", num_images=4, image_size=32, seed=0, val_fraction=0.0)
    root = tmp_path / "data"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for index, (name, text) in enumerate(lines.items()):
        shutil.copy(sorted((tmp_path / "src" / "images" / "train").iterdir())[index], root / "images" / "train" /
                    f"{name}.jpg")
        if text is not None:
            (root / "labels" / "train" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text(f"train: images/train\nval: images/train\nnames: {names}\n")
    return root


@pytest.mark.parametrize("text, words", [
    ("0 0.5 0.5 0.2\n", "line 1: expected 5 numbers (class cx cy w h), got 4"),
    ("0 0.5 0.5 0.2 0.2\n1 0.5 x 0.2 0.2\n", "line 2: expected 5 numbers (class cx cy w h), got '1 0.5 x 0.2 0.2'"),
    ("2 0.5 0.5 0.2 0.2\n", "line 1: class id 2 is not one of names' 0..1"),
    ("0 0.95 0.5 0.2 0.2\n", "line 1: box 0.95 0.5 0.2 0.2 reaches outside the image (0..1)"),
    ("0 0.5 0.5 0 0.2\n", "line 1: box 0.5 0.5 0 0.2 has no area"),
])
def test_a_bad_label_line_is_one_line_naming_the_file_and_line(tmp_path, text, words):
    root = _yolo_folder(tmp_path, {"bad": text})
    with pytest.raises(DataError) as error:
        yolo_split(root)
    assert str(error.value) == f"{root / 'labels' / 'train' / 'bad.txt'}: {words}"
    skipped = yolo_split(root, on_error="skip")  # the line is left out and counted, the image kept
    assert len(skipped) == 1 and skipped.log.num_errors == 1


def test_rounding_at_the_border_is_clipped_and_an_image_without_labels_has_no_objects(tmp_path):
    root = _yolo_folder(tmp_path, {"edge": "1 0.1 0.5 0.2004 0.2\n", "empty": None})
    dataset = yolo_split(root)
    edge, empty = sorted(dataset.samples, key=lambda sample: sample.image_id)
    np.testing.assert_allclose(edge.boxes, [[0.0, 12.8, 6.4064, 19.2]], atol=1e-4)
    assert edge.labels.tolist() == [2] and len(empty.labels) == 0


def test_data_yaml_forms_list_files_and_mapped_names(tmp_path):
    root = _yolo_folder(tmp_path, {"one": "0 0.5 0.5 0.2 0.2\n", "two": "1 0.5 0.5 0.4 0.4\n"}, names="{0: a, 1: b}")
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("./../images/train/two.jpg\n")
    (root / "data.yaml").write_text("train: [images/train]\nval: lists/val.txt\nnames: {0: a, 1: b}\n")
    assert len(yolo_split(root)) == 2
    val = yolo_split(root / "data.yaml", "val")
    assert [sample.image_path.name for sample in val.samples] == ["two.jpg"] and val.class_names == ["a", "b"]
    only_b = yolo_split(root, classes=["b"], unknown_class="skip")
    assert sorted(sample.labels.tolist() for sample in only_b.samples) == [[], [1]]
    with pytest.raises(DataError, match=r"data.yaml: no 'test' split \(it lists train, val\)$"):
        yolo_split(root, "test")
    with pytest.raises(DataError, match="no data.yaml here"):
        yolo_split(tmp_path)
    (root / "data.yaml").write_text("train: images/train\nnames: {1: a, 2: b}\n")
    with pytest.raises(DataError, match="the ids must be 0..1"):
        yolo_split(root)


def test_synth_yolo_then_check_through_the_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["data", "synth", "-o", str(tmp_path / "shapes"), "--format", "yolo", "--num-images", "10", "--image-size",
              "64"])
    assert exited.value.code in (0, None)
    with pytest.raises(SystemExit) as exited:
        main(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=yolo", "--set",
              f"data.root={tmp_path / 'shapes'}"])
    out = capsys.readouterr().out
    assert exited.value.code in (0, None), out
    assert "train" in out and "val" in out


def test_a_yolo_trained_model_writes_and_reads_yolo_class_ids(tmp_path, capsys):
    """`infer --json` of a model trained on YOLO data names classes by their ids in data.yaml (0-based) and
    images by file name; `eval --detections` reads that file back to the checkpoint's own numbers."""
    from tests.engine.test_eval_checks import TINY, infer_json_then_score, run, sets

    generate_synthetic(tmp_path / "shapes", format="yolo", num_images=12, image_size=64, seed=3, val_fraction=0.5)
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(tmp_path / "run"),
                        *sets("data.format=yolo", f"data.root={tmp_path / 'shapes'}", *TINY)], capsys)
    assert code == 0, err
    direct, results, scored = infer_json_then_score(tmp_path / "run" / "last.pt",
                                                    [str(tmp_path / "shapes" / "images" / "val")], tmp_path, capsys)
    assert results and {entry["category_id"] for entry in results} <= set(range(len(SYNTHETIC_CLASSES)))
    val_images = {path.name for path in (tmp_path / "shapes" / "images" / "val").iterdir()}
    assert {entry["image_id"] for entry in results} <= val_images
    for metric in ("voc07", "voc12"):
        assert scored[metric]["ap"] == pytest.approx(direct[metric]["ap"], abs=1e-9)
    assert scored["coco"] == pytest.approx(direct["coco"], abs=1e-9)
