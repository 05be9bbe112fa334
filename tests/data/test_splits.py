"""Validation parts drawn where a dataset has none (data.val_fraction), split lists, `detect data split`,
and a run that reuses its lists on --resume and in `detect eval`."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.data.splits import draw_split
from detect.data.synthetic import generate_synthetic
from detect.errors import DataError
from tests.engine.test_eval_checks import TINY, run, sets


def random_label_sets(seed: int, num_images: int = 60, num_classes: int = 8) -> list[set[int]]:
    """Long-tailed multi-label images: class k appears in about 1 / (k + 1) of them; some images empty."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1)
    return [set(int(c) for c in np.flatnonzero(rng.random(num_classes) < weights * 0.6) + 1)
            for _ in range(num_images)]


@pytest.mark.parametrize("seed", range(20))
def test_each_class_of_two_or_more_images_lands_in_both_parts(seed):
    label_sets = random_label_sets(seed, num_images=int(np.random.default_rng(seed).integers(5, 80)))
    is_val = draw_split(label_sets, 0.2, seed)
    images_of = Counter(label for labels in label_sets for label in labels)
    in_val = Counter(label for labels, v in zip(label_sets, is_val) if v for label in labels)
    in_train = Counter(label for labels, v in zip(label_sets, is_val) if not v for label in labels)
    for label, count in images_of.items():
        if count >= 2:
            assert in_val[label] >= 1 and in_train[label] >= 1, (label, count)
    assert 0 < is_val.sum() < len(label_sets)


def test_the_draw_is_seeded_and_near_the_fraction():
    label_sets = random_label_sets(0, num_images=400)
    first = draw_split(label_sets, 0.25, seed=7)
    assert np.array_equal(first, draw_split(label_sets, 0.25, seed=7))
    assert not np.array_equal(first, draw_split(label_sets, 0.25, seed=8))
    assert abs(first.mean() - 0.25) < 0.04


def test_one_image_cannot_be_split():
    with pytest.raises(DataError, match="at least 2 images"):
        draw_split([{1}], 0.2, 0)


def one_folder(tmp_path, num_images=20):
    """A labelImg folder with no split folders at all: every image beside its XML."""
    source = tmp_path / "voc"
    generate_synthetic(source, format="voc", num_images=num_images, image_size=64, seed=5, val_fraction=0.0)
    root = tmp_path / "one"
    root.mkdir()
    for path in [*(source / "JPEGImages").iterdir(), *(source / "Annotations").iterdir()]:
        shutil.copy(path, root)
    return root


def test_a_folder_without_splits_is_divided_when_asked_and_refused_otherwise(tmp_path):
    root = one_folder(tmp_path)
    with pytest.raises(DataError, match="data.val_fraction"):
        build_dataset(DataConfig(format="voc", root=str(root)), "train")
    data_cfg = DataConfig(format="voc", root=str(root), val_fraction=0.25)
    train, val = build_dataset(data_cfg, "train", training=True), build_dataset(data_cfg, "val")
    train_ids = {s.image_id for s in train.samples}
    val_ids = {s.image_id for s in val.samples}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 20 and len(val_ids) == 5
    assert val.split == "val" and train.class_names == val.class_names


def test_bad_split_lists_are_one_line_naming_the_file(tmp_path):
    root = one_folder(tmp_path, num_images=6)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("000000\n000001\n000002\n")
    (lists / "val.txt").write_text("000003\nnot_there\n")
    data_cfg = DataConfig(format="voc", root=str(root), split_lists=str(lists))
    with pytest.raises(DataError, match=r"val.txt: line 2: image 'not_there' is not in the training split"):
        build_dataset(data_cfg, "val")
    (lists / "val.txt").write_text("000003\n000002\n")
    with pytest.raises(DataError, match=r"val.txt: 1 image\(s\) are also in .*train.txt"):
        build_dataset(data_cfg, "val")
    (lists / "val.txt").write_text("000003\n000003\n")
    with pytest.raises(DataError, match=r"val.txt: image '000003' is listed 2 times"):
        build_dataset(data_cfg, "val")
    shutil.rmtree(lists)
    with pytest.raises(DataError, match="split list not found"):
        build_dataset(data_cfg, "train")


def test_the_drawn_part_needs_its_own_name():
    with pytest.raises(ValueError, match="needs its own name"):
        DataConfig(format="voc", val_fraction=0.2, val_split="train")


def test_data_split_writes_lists_that_a_config_reads_and_never_overwrites_them(tmp_path, capsys):
    root = one_folder(tmp_path)
    lists = tmp_path / "lists"
    args = ["data", "split", "-o", str(lists), "--config", "synthetic_ssd", "--val-fraction", "0.3",
            *sets("data.format=voc", f"data.root={root}")]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "| **all**" in out and f"data.split_lists={lists}" in out
    val_keys = (lists / "val.txt").read_text().split()
    assert len(val_keys) == 6 and len((lists / "train.txt").read_text().split()) == 14
    val = build_dataset(DataConfig(format="voc", root=str(root), split_lists=str(lists)), "val")
    assert [s.image_id for s in val.samples] == val_keys
    code, _, err = run(args, capsys)
    assert code != 0 and "already exists" in err and err.count("\n") == 1


def test_a_run_keeps_its_drawn_parts_on_resume_and_in_eval(tmp_path, capsys):
    root = one_folder(tmp_path, num_images=12)
    run_dir = tmp_path / "run"
    data = sets("data.format=voc", f"data.root={root}", "data.val_fraction=0.5", *TINY)
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *data], capsys)
    assert code == 0, err
    val_keys = (run_dir / "splits" / "val.txt").read_text().split()
    train_keys = (run_dir / "splits" / "train.txt").read_text().split()
    assert len(val_keys) == 6 and not set(val_keys) & set(train_keys)
    assert f"split_lists: {run_dir / 'splits'}" in (run_dir / "config.yaml").read_text()

    # New images arrive: a fresh draw would move images between the parts; the run's lists do not.
    extra = tmp_path / "extra"
    generate_synthetic(extra, format="voc", num_images=8, image_size=64, seed=9, val_fraction=0.0)
    for path in (extra / "JPEGImages").iterdir():
        shutil.copy(path, root / f"new_{path.name}")
        xml = extra / "Annotations" / f"{path.stem}.xml"
        shutil.copy(xml, root / f"new_{xml.name}")
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        "--resume", "auto", *data, "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    assert (run_dir / "splits" / "val.txt").read_text().split() == val_keys

    # Scored on the run's own validation part, also once the run folder has moved.
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)
    out_json = tmp_path / "eval.json"
    code, _, err = run(["eval", str(moved / "last.pt"), "--device", "cpu", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert json.loads(out_json.read_text())["num_images"] == 6
