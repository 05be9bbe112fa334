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
    code, err = run_cli(["export", checkpoint, "--output", checkpoint], capsys)
    assert_one_line(code, err, f"--output {checkpoint}: would overwrite the input {checkpoint}")
    through_a_new_folder = checkpoint.parent / "new" / ".." / checkpoint.name  # `new` would be created first
    code, err = run_cli(["export", checkpoint, "--output", through_a_new_folder], capsys)
    assert_one_line(code, err, f"--output {through_a_new_folder}: would overwrite the input {checkpoint}")
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
    code, err = run_cli(["train", "--config", config, "--device", "cpu", "--output-dir", config.parent], capsys)
    assert_one_line(code, err, f"--output-dir {config.parent}: would overwrite the input {config}")
    assert config.read_text() == before


def test_data_show_refuses_to_replace_its_config_or_its_data(files, tmp_path, capsys):
    config = files["config"]
    code, err = run_cli(["data", "show", "--config", config, "--out", config], capsys)
    assert_one_line(code, err, f"--out {config}: would overwrite the input {config}")
    root = tmp_path / "shapes"
    assert run_cli(["data", "synth", root, "-n", "4", "-s", "32"], capsys)[0] == 0
    shown = (root / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    image, xml = root / "JPEGImages" / f"{shown}.jpg", root / "Annotations" / f"{shown}.xml"
    before = image.read_bytes(), xml.read_bytes()
    for target in (image, xml):
        code, err = run_cli(["data", "show", "--config", config, "--num", "4", "--out", target], capsys)
        assert_one_line(code, err, f"--out {target}: would overwrite the input {target}")
    assert (image.read_bytes(), xml.read_bytes()) == before


def test_outputs_under_a_file_are_one_line(files, capsys):
    checkpoint, image, config, blocker = files["checkpoint"], files["image"], files["config"], files["blocker"]
    under = blocker / "sub"
    cases = [
        (["export", checkpoint, "--output", under / "m.onnx"], "--output"),
        (["eval", checkpoint, "--json", under / "r.json"], "--json"),
        (["eval", checkpoint, "--plots", under], "--plots"),
        (["infer", checkpoint, image, "--out", under], "--out"),
        (["data", "show", "--config", config, "--out", under / "grid.png"], "--out"),
        (["train", "--config", config, "--device", "cpu", "--output-dir", under], "--output-dir"),
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
        (["export", checkpoint, "--output", read_only / "m.onnx"], f"--output {read_only / 'm.onnx'}"),
        (["eval", checkpoint, "--json", read_only / "r.json"], f"--json {read_only / 'r.json'}"),
        (["eval", checkpoint, "--plots", read_only], f"--plots {read_only}"),
        (["infer", checkpoint, image, "--out", read_only], f"--out {read_only}"),
        (["data", "show", "--config", config, "--out", read_only / "grid.png"], f"--out {read_only / 'grid.png'}"),
        (["train", "--config", config, "--device", "cpu", "--output-dir", read_only], f"--output-dir {read_only}"),
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
