"""Checkpoint files: atomic writes, one-line errors for missing or corrupt files, RNG round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detect.checkpoints import load_checkpoint
from detect.engine.checkpoint import restore_rng_states, rng_states, save_checkpoint
from detect.errors import CheckpointError


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04not a checkpoint at all")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(corrupt)
    assert "not a readable checkpoint" in str(raised.value) and "\n" not in str(raised.value)
    foreign = save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="missing model, config, class_names"):
        load_checkpoint(foreign)


def test_truncated_file_is_an_error(tmp_path):
    path = save_checkpoint({"model": {"w": torch.randn(1000)}, "config": {}, "class_names": ["a"]}, tmp_path / "c.pt")
    assert load_checkpoint(path)["class_names"] == ["a"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {}, "config": {}, "class_names": [], "step": 1}, path)
    save_checkpoint({"model": {}, "config": {}, "class_names": [], "step": 2}, path)
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_states_round_trip():
    states = rng_states()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    import os

    path = tmp_path / "last.pt"
    stale = tmp_path / f".last.pt.tmp{_dead_pid()}"
    stale.write_bytes(b"half a checkpoint")
    in_progress = tmp_path / f".last.pt.tmp{os.getppid()}"  # a live process still writing
    in_progress.write_bytes(b"being written")
    other = tmp_path / f".best.pt.tmp{_dead_pid()}"  # another checkpoint's: best.pt may never be written again
    other.write_bytes(b"x")
    not_ours = tmp_path / f".notes.txt.tmp{_dead_pid()}"
    not_ours.write_bytes(b"x")
    save_checkpoint({"model": {}, "config": {}, "class_names": [], "step": 1}, path)
    assert not stale.exists() and in_progress.exists() and not other.exists() and not_ours.exists()
    assert load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("field, value, message", [
    ("model", "not weights", "'model' must be a state dict (names to tensors), got str"),
    ("model", {"w": [1.0, 2.0]}, "'model' must be a state dict (names to tensors), got dict"),
    ("class_names", "cat", "'class_names' must be a list of strings, got 'cat'"),
    ("class_names", ["cat", 3], "'class_names' must be a list of strings, got ['cat', 3]"),
])
def test_fields_of_the_wrong_type_are_one_line_errors(tmp_path, field, value, message):
    state = {"model": {"w": torch.zeros(2)}, "config": {}, "class_names": ["cat"], field: value}
    path = save_checkpoint(state, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == f"{path}: {message}"


@pytest.mark.parametrize("command", [["eval"], ["infer"], ["export"]])
def test_commands_refuse_a_checkpoint_of_the_wrong_shape_in_one_line(tmp_path, capsys, command):
    from detect.cli import main

    path = save_checkpoint({"model": {"w": torch.zeros(1)}, "config": {}, "class_names": "cat"}, tmp_path / "odd.pt")
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the checkpoint fails first
    args = command + [str(path)] + ([str(image), "--out", str(tmp_path / "out")] if command == ["infer"] else [])
    with pytest.raises(SystemExit) as exited:
        main(args + (["--device", "cpu"] if command != ["export"] else []))
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {path}: 'class_names' must be a list of strings, got 'cat'\n"
