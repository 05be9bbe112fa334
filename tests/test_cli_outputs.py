"""Every command's outputs: never over one of its own inputs, and one line when they cannot be written.

The checks run before any model or data is loaded, so a checkpoint here is any file (its bytes must
survive). "Under a file" stands for every reason a path cannot be written (tests run as root, whom a
read-only folder does not stop; tests/test_outputs.py covers the refused write)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detect.cli import main
from tests.conftest import load_tool


def run_cli(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
        raise SystemExit(0)
    return exited.value.code, capsys.readouterr().err


def assert_one_line(code: int, stderr: str, *parts: str) -> None:
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    for part in parts:
        assert part in stderr, stderr


@pytest.fixture
def files(tmp_path):
    """A checkpoint-like file, an image, a YAML config and a plain file to write under."""
    checkpoint = tmp_path / "ck.pt"
    checkpoint.write_bytes(b"checkpoint bytes")
    image = tmp_path / "images" / "x.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    config = tmp_path / "run" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"base: synthetic_ssd\ndata:\n  root: {tmp_path / 'shapes'}\n")
    blocker = tmp_path / "plain.txt"
    blocker.write_text("a file")
    return {"checkpoint": checkpoint, "image": image, "config": config, "blocker": blocker}


def test_export_refuses_to_replace_its_checkpoint(files, capsys):
    checkpoint = files["checkpoint"]
    code, err = run_cli(["export", checkpoint, "--out", checkpoint], capsys)
    assert_one_line(code, err, f"--out {checkpoint}: would overwrite the input {checkpoint}")
    through_a_new_folder = checkpoint.parent / "new" / ".." / checkpoint.name  # `new` would be created first
    code, err = run_cli(["export", checkpoint, "--out", through_a_new_folder], capsys)
    assert_one_line(code, err, f"--out {through_a_new_folder}: would overwrite the input {checkpoint}")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_eval_refuses_to_replace_its_inputs(files, tmp_path, capsys):
    checkpoint, config = files["checkpoint"], files["config"]
    code, err = run_cli(["eval", checkpoint, "--json", checkpoint], capsys)
    assert_one_line(code, err, f"--json {checkpoint}: would overwrite the input {checkpoint}")
    detections = tmp_path / "det.json"
    detections.write_text("[]")
    code, err = run_cli(["eval", "--detections", detections, "--config", config, "--json", config], capsys)
    assert_one_line(code, err, f"--json {config}: would overwrite the input {config}")
    assert checkpoint.read_bytes() == b"checkpoint bytes" and detections.read_text() == "[]"


def test_train_refuses_a_run_folder_whose_files_replace_its_config(files, capsys):
    config = files["config"]
    before = config.read_text()
    code, err = run_cli(["train", "--config", config, "--device", "cpu", "--out", config.parent], capsys)
    assert_one_line(code, err, f"--out {config.parent}: would overwrite the input {config}")
    assert config.read_text() == before


def test_data_show_refuses_to_replace_its_config_or_its_data(files, tmp_path, capsys):
    config = files["config"]
    code, err = run_cli(["data", "show", "--config", config, "--out", config], capsys)
    assert_one_line(code, err, f"--out {config}: would overwrite the input {config}")
    root = tmp_path / "shapes"
    assert run_cli(["data", "synth", "-o", root, "-n", "4", "-s", "32"], capsys)[0] == 0
    shown = (root / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    image, xml = root / "JPEGImages" / f"{shown}.jpg", root / "Annotations" / f"{shown}.xml"
    before = image.read_bytes(), xml.read_bytes()
    for target in (image, xml):
        code, err = run_cli(["data", "show", "--config", config, "-n", "4", "--out", target], capsys)
        assert_one_line(code, err, f"--out {target}: would overwrite the input {target}")
    assert (image.read_bytes(), xml.read_bytes()) == before


def test_outputs_under_a_file_are_one_line(files, capsys):
    checkpoint, image, config, blocker = files["checkpoint"], files["image"], files["config"], files["blocker"]
    under = blocker / "sub"
    cases = [
        (["export", checkpoint, "--out", under / "m.onnx"], "--out"),
        (["eval", checkpoint, "--json", under / "r.json"], "--json"),
        (["eval", checkpoint, "--plots", under], "--plots"),
        (["infer", checkpoint, image, "--out", under], "--out"),
        (["data", "show", "--config", config, "--out", under / "grid.png"], "--out"),
        (["train", "--config", config, "--device", "cpu", "--out", under], "--out"),
    ]
    for args, option in cases:
        code, err = run_cli(args, capsys)
        assert_one_line(code, err, f"error: {option} {under}", f"cannot create the folder, {blocker} is a file")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_outputs_in_a_read_only_folder_are_one_line(files, tmp_path, monkeypatch, capsys):
    """A folder that refuses writes (read-only for this user, a read-only mount): root writes anyway,
    so the refusal the write probe would meet is made here."""
    import errno

    from detect import outputs

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", refuse)
    checkpoint, image, config = files["checkpoint"], files["image"], files["config"]
    read_only = tmp_path / "read_only"
    cases = [
        (["export", checkpoint, "--out", read_only / "m.onnx"], f"--out {read_only / 'm.onnx'}"),
        (["eval", checkpoint, "--json", read_only / "r.json"], f"--json {read_only / 'r.json'}"),
        (["eval", checkpoint, "--plots", read_only], f"--plots {read_only}"),
        (["infer", checkpoint, image, "--out", read_only], f"--out {read_only}"),
        (["data", "show", "--config", config, "--out", read_only / "grid.png"], f"--out {read_only / 'grid.png'}"),
        (["train", "--config", config, "--device", "cpu", "--out", read_only], f"--out {read_only}"),
    ]
    for args, named in cases:
        code, err = run_cli(args, capsys)
        assert_one_line(code, err, f"error: {named}: cannot write there (Permission denied)")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_eval_map_json_is_checked_before_measuring(files, capsys):
    tool = load_tool("eval_map")
    checkpoint, blocker = files["checkpoint"], files["blocker"]
    assert tool.main([str(checkpoint), "--json", str(checkpoint)]) == 2
    assert f"--json {checkpoint}: would overwrite the input {checkpoint}" in capsys.readouterr().err
    assert tool.main([str(checkpoint), "--json", str(blocker / "b.json")]) == 2
    assert f"cannot create the folder, {blocker} is a file" in capsys.readouterr().err
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_export_never_writes_its_companion_files_over_an_input_or_a_users_file(files, tmp_path, capsys):
    """OpenVINO writes model.bin beside model.xml, TensorRT model.engine.json, INT8 its report: each is
    checked like the model file (a Hugging Face style pytorch_model.bin would get the IR's weights)."""
    folder = tmp_path / "hub"
    folder.mkdir()
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(b"checkpoint bytes")
    code, err = run_cli(["export", weights, "--format", "openvino"], capsys)
    assert_one_line(code, err, f"--out {folder / 'pytorch_model.xml'}: would overwrite the input {weights}")
    assert weights.read_bytes() == b"checkpoint bytes"
    checkpoint = files["checkpoint"]
    notes = tmp_path / "notes.xml"
    notes.write_text("<notes/>")
    code, err = run_cli(["export", checkpoint, "--format", "openvino", "--out", notes], capsys)
    assert_one_line(code, err, f"would replace {notes}, which is not a model an earlier detect export --format "
                               "openvino wrote there")
    lone_bin = tmp_path / "model.bin"
    lone_bin.write_bytes(b"mine")
    code, err = run_cli(["export", checkpoint, "--format", "openvino", "--out", tmp_path / "model.xml"], capsys)
    assert_one_line(code, err, f"would replace {lone_bin}")
    report = tmp_path / "m.int8.onnx.json"
    report.write_text("{}")
    code, err = run_cli(["export", checkpoint, "--int8", "--out", tmp_path / "m.int8.onnx"], capsys)
    assert_one_line(code, err, f"would replace {report}")
    code, err = run_cli(["export", checkpoint, "--format", "openvino", "--out", tmp_path / "m.onnx"], capsys)
    assert_one_line(code, err, "--format openvino writes a .xml file; give a name ending in .xml")
    assert (notes.read_text(), lone_bin.read_bytes(), report.read_text()) == ("<notes/>", b"mine", "{}")


def test_plot_never_writes_over_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"type": "epoch", "epoch": 1, "loss": 1.0, "lr": 0.1}\n')
    best = run / "best.pt"
    best.write_bytes(b"checkpoint bytes")
    code, err = run_cli(["plot", run, "--out", best], capsys)
    assert_one_line(code, err, f"--out {best}: exists and is not an image")
    assert best.read_bytes() == b"checkpoint bytes"


def test_convert_refuses_to_write_into_its_own_source(tmp_path, capsys):
    source = tmp_path / "shapes"
    assert run_cli(["data", "synth", "-o", source, "-n", "6", "-s", "32", "--format", "yolo"], capsys)[0] == 0
    before = sorted(path for path in source.rglob("*"))
    for out in (source / "images" / "val" / "conv", source):
        code, err = run_cli(["data", "convert", "-o", out, "--config", "synthetic_ssd", "--set", "data.format=yolo",
                             "--set", f"data.root={source}", "--set", "data.classes=null", "--format", "yolo"], capsys)
        assert_one_line(code, err, f"convert {out}: inside the dataset it converts")
    assert sorted(path for path in source.rglob("*")) == before


def test_a_convert_that_fails_half_way_leaves_nothing_and_can_be_run_again(tmp_path, capsys):
    source, out = tmp_path / "shapes", tmp_path / "out"
    assert run_cli(["data", "synth", "-o", source, "-n", "6", "-s", "32"], capsys)[0] == 0
    args = ["data", "convert", "-o", out, "--config", "synthetic_ssd", "--set", f"data.root={source}", "--format",
            "coco"]
    code, err = run_cli([*args, "--splits", "train,nosuch"], capsys)
    assert code == 2 and "nosuch" in err and not out.exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    assert run_cli([*args, "--splits", "train,val"], capsys)[0] == 0
    assert sorted(path.name for path in (out / "annotations").iterdir()) == ["instances_train.json",
                                                                            "instances_val.json"]


def test_data_split_refuses_a_zero_fraction_and_a_file(tmp_path, capsys):
    source = tmp_path / "shapes"
    assert run_cli(["data", "synth", "-o", source, "-n", "6", "-s", "32"], capsys)[0] == 0
    args = ["--config", "synthetic_ssd", "--set", f"data.root={source}"]
    code, err = run_cli(["data", "split", "-o", tmp_path / "lists", *args, "--val-fraction", "0"], capsys)
    assert_one_line(code, err, "--val-fraction must be between 0 and 1 (both left out), got 0.0")
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    code, err = run_cli(["data", "split", "-o", blocker, *args], capsys)
    assert_one_line(code, err, f"detect data split -o {blocker}: is a file")
    assert blocker.read_text() == "mine" and not (tmp_path / "lists").exists()
