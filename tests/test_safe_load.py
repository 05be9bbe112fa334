"""No code runs from a file a user is handed: hostile checkpoints and state dicts are refused by every
loading path (checkpoints, trunk and detector weight files, torch hub downloads, and every command and
tool that reads one), in all three file forms torch.load reads (zip, legacy torch.save, plain pickle)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.zoo import read_state_dict
from detect.checkpoints import load_checkpoint
from detect.engine.checkpoint import restore_rng_states, rng_states
from detect.errors import CheckpointError
from detect.models.backbones.weight_files import hub_state_dict, load_classifier_weights
from detect.models.weights import read_detector_weights
from detect.safe_load import safe_torch_load
from tests.conftest import REPO_ROOT, load_tool


class RunsCode:
    """Unpickling this calls os.system, which creates `marker`: the attack a shared checkpoint can carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_file(folder, form: str, marker):
    payload = {"model": RunsCode(marker), "config": {}, "class_names": ["a"]}
    path = folder / f"hostile_{form}.pt"
    if form == "zip":
        torch.save(payload, path)
    elif form == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file, protocol=2 if form == "pickle2" else 4)
    return path


FORMS = ("zip", "legacy", "pickle2", "pickle4")


@pytest.mark.parametrize("form", FORMS)
def test_every_loader_refuses_a_file_that_runs_code(tmp_path, form):
    marker = tmp_path / "ran"
    path = hostile_file(tmp_path, form, marker)
    loaders = [
        lambda: load_checkpoint(path),
        lambda: read_state_dict(path, torch.nn.Linear(1, 1)),
        lambda: load_classifier_weights(torch.nn.Linear(1, 1), "resnet18", str(path)),
        lambda: read_detector_weights(str(path), "faster_rcnn", "resnet50_fpn"),  # model.pretrained: PATH
    ]
    for load in loaders:
        with pytest.raises(CheckpointError) as raised:
            load()
        message = str(raised.value)
        assert "\n" not in message and str(path) in message
        if form == "pickle4":  # torch's safe unpickler stops at the first protocol-4 opcode it lacks
            assert "not a readable" in message and "Unsupported operand" in message
        else:
            assert "refused to load" in message and "system" in message
    assert not marker.exists()


def test_a_downloaded_weight_file_that_runs_code_is_refused(tmp_path, monkeypatch):
    """pretrained: imagenet or coco on a machine with network: the download is read as a local file is."""
    marker = tmp_path / "ran"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def download(url, dst, hash_prefix=None, progress=True):
        hostile_file(tmp_path, "zip", marker).rename(dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError) as raised:
        hub_state_dict(url, "model.pretrained=imagenet", "ImageNet weights for 'resnet18'")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(raised.value).startswith(f"{cached}: refused to load: the state dict asks to run '")
    assert not marker.exists()


def test_eval_map_refuses_a_hostile_checkpoint_in_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = hostile_file(tmp_path, "zip", marker)
    assert load_tool("eval_map").main([str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: refused to load") and err.count("\n") == 1
    assert not marker.exists()


def test_plain_tensors_and_data_still_load(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.arange(3.0), "names": ["a", "b"], "n": 3, "x": None, "t": (1, 2.5)}, path)
    loaded = safe_torch_load(path, "state dict")
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["names"] == ["a", "b"]
    assert loaded["t"] == (1, 2.5)


def test_rng_states_are_plain_data_and_round_trip_through_a_file(tmp_path):
    path = tmp_path / "rng.pt"
    torch.save(rng_states(), path)
    first = (np.random.rand(3), torch.rand(2))
    restore_rng_states(safe_torch_load(path, "checkpoint"))
    again = (np.random.rand(3), torch.rand(2))
    assert np.array_equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_an_earlier_versions_numpy_rng_state_still_loads(tmp_path):
    """Checkpoints written before weights_only loading stored np.random.get_state() as it is."""
    path = tmp_path / "old.pt"
    states = rng_states()
    states["numpy"] = np.random.get_state()
    torch.save(states, path)
    expected = np.random.rand(3)
    restore_rng_states(safe_torch_load(path, "checkpoint"))
    assert np.array_equal(np.random.rand(3), expected)


@pytest.mark.parametrize("command", [
    ["eval", "{ckpt}"],
    ["infer", "{ckpt}", "{image}"],
    ["export", "{ckpt}", "--out", "{tmp}/model.onnx"],
    ["train", "--config", "synthetic_ssd", "--resume", "{ckpt}", "--out", "{tmp}/run"],
    ["train", "--config", "synthetic_ssd", "--out", "{tmp}/run", "--set", "model.pretrained={ckpt}",
     "--set", "data.root={tmp}/shapes", "--set", "data.synth.num_images=4", "--set", "data.synth.image_size=32"],
    ["serve", "{ckpt}", "--device", "cpu", "--port", "8765"],
    ["infer", "{ckpt}", "{image}", "--backend", "onnxruntime"],
])
def test_cli_commands_refuse_a_hostile_checkpoint_in_one_line(tmp_path, command):
    marker = tmp_path / "ran"
    path = hostile_file(tmp_path, "zip", marker)
    image = tmp_path / "image.png"
    image.write_bytes(b"")  # never read: the checkpoint is refused first
    args = [part.format(ckpt=path, image=image, tmp=tmp_path) for part in command]
    result = subprocess.run([sys.executable, "-m", "detect", *args], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode != 0
    assert "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("content, said", [
    (b"model weights: see the README\n", "it is text (it starts with 'model weights: see the README')"),
    (b"", "the file is empty (0 bytes)"),
    (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", "it starts with the bytes 00 01 02 03 04 05 06 07"),
])
def test_a_file_torch_never_wrote_is_named_for_what_it_is(tmp_path, content, said):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(raised.value).startswith(f"{path}: not a readable checkpoint: {said}")
