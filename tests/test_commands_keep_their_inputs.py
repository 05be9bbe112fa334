"""Every command that writes files, walked in the order a user runs them, in one folder that holds all
their inputs and outputs: after each command, every file outside what that command names as its output
is byte for byte as it was, and nothing new appears outside it. The working folder is the same
folder, so a stray default output would be seen too."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import run_detect

TINY_SSD = ["input.size=64", "model.ssd.aspect_ratios=[[2],[2],[2]]", "data.num_workers=0", "train.epochs=1",
            "train.batch_size=4", "eval.batch_size=4", "train.warmup_iters=2"]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file (links: what they point at) under `folder`."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(folder).as_posix()] = "-> " + str(path.readlink())
        elif path.is_file():
            found[path.relative_to(folder).as_posix()] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def is_under(relative: str, outputs: list[str]) -> bool:
    return any(relative == output or relative.startswith(output.rstrip("/") + "/") for output in outputs)


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def commands(data: str) -> list[tuple[list[str], list[str]]]:
    """(arguments, the outputs they name, relative to the folder)."""
    config = ["--config", "synthetic_ssd", "--set", f"data.root={data}"]
    return [
        (["data", "synth", "-o", data, "-n", "16", "-s", "64", "--seed", "3"], [data]),
        (["data", "synth", "-o", "clips", "--video", "--clips", "1", "--frames", "4"], ["clips"]),
        (["data", "check", *config], []),
        (["data", "stats", *config, "--plots", "stats"], ["stats"]),
        (["data", "show", *config, "-n", "2", "--out", "grid.png"], ["grid.png"]),
        (["data", "split", "-o", "lists", *config], ["lists"]),
        (["data", "convert", "-o", "as_yolo", *config, "--format", "yolo"], ["as_yolo"]),
        (["train", *config, *sets(TINY_SSD), "--device", "cpu", "--out", "run"], ["run"]),
        (["plot", "run", "--out", "curves.png"], ["curves.png"]),
        (["eval", "run/best.pt", "--device", "cpu", "--json", "eval.json", "--plots", "eval_plots"],
         ["eval.json", "eval_plots"]),
        (["infer", "run/best.pt", f"{data}/JPEGImages", "--device", "cpu", "--out", "infer", "--json", "-q"],
         ["infer"]),
        (["export", "run/best.pt", "--out", "model.onnx"], ["model.onnx"]),
        (["eval", "model.onnx", "--json", "eval_onnx.json"], ["eval_onnx.json"]),
        (["infer", "model.onnx", "clips/clip_0.mp4", "--track", "--out", "tracked", "-q"], ["tracked"]),
        # Run again: each replaces only its own earlier output.
        (["data", "synth", "-o", "clips", "--video", "--clips", "1", "--frames", "3"], ["clips"]),
        (["export", "run/best.pt", "--out", "model.onnx"], ["model.onnx"]),
        (["plot", "run", "--out", "curves.png"], ["curves.png"]),
    ]


def refused(data: str) -> list[list[str]]:
    """Commands whose output would land on an input or among a user's files: each is refused and
    changes nothing at all (run after the walk, in the folder it left)."""
    config = ["--config", "synthetic_ssd", "--set", f"data.root={data}"]
    return [
        ["data", "synth", "-o", "run"],
        ["data", "synth", "-o", "mine.txt"],
        ["data", "synth", "-o", "clips2", "--video", "--frames", "100000"],
        ["data", "check", "--config", "synthetic_ssd", "--set", "data.root=infer"],
        ["data", "convert", "-o", f"{data}/JPEGImages/copy", *config, "--format", "voc"],
        ["data", "convert", "-o", "as_yolo", *config, "--format", "coco"],
        ["data", "show", *config, "--out", "run/last.pt"],
        ["data", "stats", *config, "--plots", "mine.txt"],
        ["data", "split", "-o", "mine.txt", *config],
        ["plot", "run", "--out", "run/best.pt"],
        ["eval", "run/best.pt", "--json", "run/best.pt"],
        ["export", "hub/pytorch_model.bin", "--format", "openvino"],
        ["export", "run/best.pt", "--out", "mine.txt"],
        ["export", "run/best.pt", "--format", "openvino", "--out", f"{data}/Annotations/000000.xml"],
        ["infer", "run/best.pt", "grid.png", "--out", "mine.txt"],
        ["train", *config, *sets(TINY_SSD), "--device", "cpu", "--out", "mine.txt"],
    ]


def test_no_command_changes_a_file_outside_its_output(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason="the walk exports and runs an ONNX model: pip install -e '.[export]'")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("a user's file beside everything")
    for args, outputs in commands("shapes"):
        before = snapshot(tmp_path)
        code, _, err = run_detect(args, capsys)
        assert code == 0, f"detect {' '.join(args)}\n{err[-2000:]}"
        after = snapshot(tmp_path)
        changed = sorted(path for path in before if after.get(path) != before[path] and not is_under(path, outputs))
        appeared = sorted(path for path in after if path not in before and not is_under(path, outputs))
        assert (changed, appeared) == ([], []), f"detect {' '.join(args)}"
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "pytorch_model.bin").write_bytes((tmp_path / "run" / "best.pt").read_bytes())
    before = snapshot(tmp_path)
    for args in refused("shapes"):
        code, _, err = run_detect(args, capsys)
        assert code != 0 and "Traceback" not in err, f"detect {' '.join(args)}\n{err[-2000:]}"
        assert snapshot(tmp_path) == before, f"detect {' '.join(args)}"
    assert (tmp_path / "mine.txt").read_text() == "a user's file beside everything"
