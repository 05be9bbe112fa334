"""Labels that are not where the reader looks: a split of images without one object is an error for
`data check`, `train` and `eval` alike (not a run that trains on nothing), a share of images without
label files is a warning with the count, label files without images are reported, and `data check`
judges each split with the classes training would use."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_detect
from tests.data.conftest import voc_xml, write_image, write_voc


def yolo_without_labels(root: Path) -> Path:
    for index in range(3):
        write_image(root / "images" / "train" / f"{index}.jpg", 32, 32, seed=index)
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [thing]\n")
    return root


def test_images_without_any_label_file_fail_check_and_train(tmp_path, capsys):
    root = yolo_without_labels(tmp_path / "data")
    config = ["--config", "synthetic_ssd", "--set", "data.format=yolo", "--set", f"data.root={root}",
              "--set", "data.classes=null"]
    code, out, err = run_detect(["data", "check", *config, "--split", "train"], capsys)
    assert code == 1 and "1 error(s) found" in err
    assert (f"split 'train' has 3 images and not one object: no image has a label file (the labels of "
            f"{root / 'images' / 'train' / '0.jpg'} would be in {root / 'labels' / 'train' / '0.txt'})") in out
    run = tmp_path / "run"
    code, _, err = run_detect(["train", *config, "--set", "train.epochs=1", "--device", "cpu", "--out", run],
                              capsys)
    assert code == 2 and err.count("\n") == 1 and "has 3 images and not one object" in err, err
    assert not (run / "best.pt").exists()


def test_some_images_without_label_files_and_labels_without_images_are_counted(tmp_path, capsys):
    root = yolo_without_labels(tmp_path / "data")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "0.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "labels" / "train" / "classes.txt").write_text("thing\n")  # labelImg's class list: not a label file
    code, out, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=yolo",
                                 "--set", f"data.root={root}", "--set", "data.classes=null", "--split", "train"],
                                capsys)
    assert code == 0, err
    assert "2 of 3 images have no label file and are read as images without objects" in out
    assert f"1 label files have no image and are not read (e.g. {root / 'labels' / 'train' / 'gone.txt'})" in out


def test_flat_voc_with_its_xml_elsewhere_fails_and_orphan_xml_is_reported(tmp_path, capsys):
    root = tmp_path / "flat"
    for index in range(2):
        write_image(root / "train" / f"{index}.jpg", 48, 64, seed=index)
    (root / "train" / "stray.xml").write_text(voc_xml([("cat", 1, 1, 10, 10)]))
    config = ["--config", "synthetic_ssd", "--set", "data.format=voc", "--set", f"data.root={root}",
              "--set", "data.classes=[cat]"]
    code, out, _ = run_detect(["data", "check", *config, "--split", "train"], capsys)
    assert code == 1
    assert "split 'train' has 2 images and not one object: no image has a label file" in out
    assert f"1 label files have no image and are not read (e.g. {root / 'train' / 'stray.xml'})" in out


def test_check_judges_val_with_the_training_classes(tmp_path, capsys):
    """A class only the validation folder has: training refuses it, so checking must not pass it."""
    root = tmp_path / "flat"
    write_image(root / "train" / "a.jpg", 48, 64)
    (root / "train" / "a.xml").write_text(voc_xml([("cat", 1, 1, 10, 10)]))
    write_image(root / "val" / "b.jpg", 48, 64, seed=1)
    (root / "val" / "b.xml").write_text(voc_xml([("cat", 1, 1, 10, 10), ("owl", 5, 5, 20, 20)]))
    code, out, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=voc",
                                 "--set", f"data.root={root}", "--set", "data.classes=null"], capsys)
    assert code == 1 and "1 error(s) found" in err
    assert "class 'owl'" in out


def test_a_devkit_split_whose_images_are_all_empty_cannot_be_scored(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 10, 10)], "b": []}, {"train": ["a"], "val": ["b"]})
    code, out, _ = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=voc",
                               "--set", f"data.root={root}", "--set", "data.classes=[cat]"], capsys)
    assert code == 1 and "split 'val' has 1 images and not one object" in out
