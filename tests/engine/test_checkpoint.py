"""Checkpoint files: atomic writes, one-line errors for missing or corrupt files, RNG round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detect.engine.checkpoint import (load_checkpoint, restore_rng_states, rng_states, save_checkpoint)
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
