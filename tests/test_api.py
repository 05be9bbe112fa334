"""detect.train and detect.evaluate: the example of docs/training.md runs as written."""

from __future__ import annotations

import re

import pytest

import detect
from detect.api import override_strings
from detect.errors import DetectError
from tests.conftest import REPO_ROOT


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO_ROOT / "docs" / "training.md").read_text()
    example = re.search(r"## From Python.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/training.md", "exec"), {})
    run_dir = tmp_path / "runs" / "from_python"
    assert (run_dir / "last.pt").is_file() and (run_dir / "results.csv").is_file()
    printed = capsys.readouterr().out.splitlines()  # the run's log lines, then the example's two
    assert printed[-2].startswith("runs/from_python ") and "'circle'" in printed[-2]
    assert printed[-1].endswith(" 2")  # the 2 validation images of 12 (data.synth.val_fraction 0.2)


def test_overrides_as_a_mapping_read_back_as_the_same_values():
    strings = override_strings({"train.epochs": 3, "model.ssd.aspect_ratios": [[2.0]], "data.classes": None,
                                "data.root": "a b", "train.amp": False})
    assert strings == ["train.epochs=3", "model.ssd.aspect_ratios=[[2.0]]", "data.classes=null", "data.root=a b",
                       "train.amp=false"]
    config = detect.api.resolve_config("synthetic_ssd", {"train.epochs": 3, "data.classes": None})
    assert config.train.epochs == 3 and config.data.classes is None


def test_a_bad_override_raises_the_one_line_error():
    with pytest.raises(DetectError, match="train.epochs"):
        detect.train("synthetic_ssd", overrides={"train.epochs": 0})


def test_one_override_string_is_one_override():
    assert override_strings("train.epochs=1") == ["train.epochs=1"]
    from detect.api import resolve_config

    assert resolve_config("synthetic_ssd", "train.epochs=3").train.epochs == 3


def test_train_takes_the_commands_shortcuts(tmp_path, capsys):
    from detect.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "mine", format="yolo", num_images=12, image_size=64, seed=1, val_fraction=0.34)
    run = detect.train(data=tmp_path / "mine", epochs=1, image_size=64, batch_size=4, weights="none",
                       overrides={"data.num_workers": 0, "eval.batch_size": 4}, output_dir=tmp_path / "run")
    assert run["run_dir"] == tmp_path / "run" and run["metrics"] is not None
    assert "data: " in capsys.readouterr().out
    with pytest.raises(DetectError, match="give data="):
        detect.train()
