"""`detect train --data PATH` on each form users have (found from its files, classes from the data),
the shortcuts over a preset, the starting weights said in one line, and `detect models`."""

from __future__ import annotations

import shutil

import pytest

from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.errors import DetectError
from detect.run_config import resolve_run_config
from tests.conftest import run_detect

# A small, fast run of the default preset: its architecture and recipe at 64 px, one epoch.
QUICK = ["--image-size", "64", "--epochs", "1", "--batch-size", "4", "--weights", "none",
         "--set", "data.num_workers=0", "--set", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The same 12 images as a VOC devkit, a labelImg folder, a YOLO data.yaml and a COCO JSON file."""
    folder = tmp_path_factory.mktemp("own_data")
    for form in ("voc", "coco", "yolo"):
        generate_synthetic(folder / form, format=form, num_images=12, image_size=64, seed=1, val_fraction=0.34)
    labelimg = folder / "labelimg"
    labelimg.mkdir()
    for image in (folder / "voc" / "JPEGImages").iterdir():
        shutil.copy(image, labelimg / image.name)
        shutil.copy(folder / "voc" / "Annotations" / f"{image.stem}.xml", labelimg / f"{image.stem}.xml")
    return {"voc devkit": folder / "voc", "labelImg folder": labelimg, "yolo data.yaml": folder / "yolo" / "data.yaml",
            "coco json": folder / "coco" / "annotations" / "instances_train.json"}


@pytest.mark.parametrize("form", ["voc devkit", "labelImg folder", "yolo data.yaml", "coco json"])
def test_train_on_each_form_of_ones_own_data(forms, form, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_detect(["train", "--data", forms[form], *QUICK, "--device", "cpu", "--out", run_dir],
                                capsys)
    assert code == 0, err
    assert out.startswith(f"data: {forms[form]} is a")
    assert "starting weights: random (model.pretrained none)" in out and "config ssdlite320: ssdlite" in out
    log = (run_dir / "train.log").read_text()
    assert "val mAP@0.5 (voc07)" in log and (run_dir / "best.pt").is_file()
    saved = (run_dir / "config.yaml").read_text()
    assert all(name in saved for name in SYNTHETIC_CLASSES)  # the classes came from the data


def test_shortcuts_sit_between_the_preset_and_set():
    config, lines = resolve_run_config(model="frcnn_mobilenet320", epochs=3, image_size=256, batch_size=2,
                                       weights="none", overrides=["train.batch_size=4"])
    assert (config.name, config.model.arch, config.train.epochs) == ("frcnn_mobilenet320", "faster_rcnn", 3)
    assert (config.input.min_size, config.input.max_size) == (256, 512)  # the preset's 320 / 640 proportion
    assert config.train.batch_size == 4  # --set wins
    assert lines[-1].startswith("config frcnn_mobilenet320: faster_rcnn")
    timed, _ = resolve_run_config(model="ssdlite320", time_minutes=2.5, weights="none")
    assert timed.train.time_minutes == 2.5


@pytest.mark.parametrize("kwargs, said", [
    ({"config": "voc_ssd300", "model": "ssd300"}, "--config and --model both choose the detector"),
    ({"model": "ssdlite320", "epochs": 2, "time_minutes": 1.0}, "--epochs and --time both set the run's length"),
    ({}, "give --data PATH"),
    ({"model": "yolo11n"}, "--model yolo11n: unknown model preset; choose from"),
])
def test_shortcuts_that_conflict_are_one_line(kwargs, said):
    with pytest.raises(DetectError, match=said):
        resolve_run_config(**kwargs)


def test_a_preset_without_its_weights_here_starts_random_and_says_so(offline):
    config, lines = resolve_run_config(model="ssdlite320")
    assert config.model.pretrained == "none"
    assert any(line.startswith("starting weights: random: the imagenet weights (mobilenet_v3_large-")
               and "--weights FILE" in line for line in lines)


def test_detect_models_lists_the_presets(capsys):
    code, out, _ = run_detect(["models"], capsys)
    assert code == 0
    for name in ("ssdlite320 (default)", "ssd300", "frcnn_mobilenet320", "frcnn_fpn", "frcnn_vgg16"):
        assert f"\n{name}" in f"\n{out}"
    assert "images/s (1 image at a time on a 2-core Intel Xeon)" in out
