"""A model file never decides where we write: the config a checkpoint or an exported model carries may
name a synthetic dataset at any path, and scoring it reads the data there or says it is missing, but
never generates it (over a user's files or anywhere else). A user who names the folder decides."""

from __future__ import annotations

from pathlib import Path

import torch

from detect.config import config_to_dict
from tests.conftest import run_detect
from tests.data.conftest import write_image
from tests.infer.conftest import CLASS_NAMES


def checkpoint_naming(root: Path, tiny_models, folder: Path) -> Path:
    """The tiny SSD (3 of the 5 shapes) as a checkpoint whose config says: synthetic data in `root`."""
    model, config = tiny_models["ssd"]
    data = config.data.model_copy(update={"root": str(root), "format": "synthetic", "unknown_class": "skip"})
    path = folder / "planted.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config.model_copy(update={"data": data})),
                "class_names": CLASS_NAMES}, path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_eval_of_a_model_file_never_generates_its_data(tiny_models, tmp_path, capsys):
    victim = tmp_path / "photos"
    for index in range(3):
        write_image(victim / f"{index}.jpg", 32, 32, seed=index)
    before = snapshot(victim)
    checkpoint = checkpoint_naming(victim, tiny_models, tmp_path)
    onnx_file = tmp_path / "planted.onnx"
    code, _, err = run_detect(["export", checkpoint, "--out", onnx_file], capsys)
    assert code == 0, err
    for model_file in (checkpoint, onnx_file):
        code, _, err = run_detect(["eval", model_file, "--device", "cpu"], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{model_file}: its config's data (synthetic shapes in {victim}) is not there, and data is never " \
               "generated from a model file's config" in err
        assert snapshot(victim) == before
    absent = tmp_path / "nowhere"
    code, _, err = run_detect(["eval", checkpoint_naming(absent, tiny_models, tmp_path), "--device", "cpu"], capsys)
    assert code == 2 and not absent.exists(), err


def test_eval_of_a_model_file_reads_its_synthetic_data_where_it_is_or_where_the_user_says(tiny_models, tmp_path,
                                                                                          capsys):
    shapes = tmp_path / "shapes"
    assert run_detect(["data", "synth", "-o", shapes, "-n", "6", "-s", "64"], capsys)[0] == 0
    code, out, err = run_detect(["eval", checkpoint_naming(shapes, tiny_models, tmp_path), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "on voc split 'val'" in out  # read as the VOC folder it is
    named = tmp_path / "named"
    code, out, err = run_detect(["eval", checkpoint_naming(tmp_path / "elsewhere", tiny_models, tmp_path),
                                 "--device", "cpu", "--set", f"data.root={named}", "--set", "data.synth.num_images=6",
                                 "--set", "data.synth.image_size=64"], capsys)
    assert code == 0, err
    assert (named / "ImageSets" / "Main" / "val.txt").is_file() and not (tmp_path / "elsewhere").exists()


def test_an_export_replaces_its_own_earlier_export(checkpoints, tmp_path, capsys):
    target = tmp_path / "model.onnx"
    for _ in range(2):
        code, _, err = run_detect(["export", checkpoints["ssd"], "--out", target], capsys)
        assert code == 0, err
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not an onnx file of ours")
    code, _, err = run_detect(["export", checkpoints["ssd"], "--out", foreign], capsys)
    assert code == 2 and f"would replace {foreign}, which is not a model an earlier detect export" in err
    assert foreign.read_bytes() == b"not an onnx file of ours"
