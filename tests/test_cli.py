"""The CLI's own behaviour: help, config show, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from detect.cli import main
from tests.conftest import REPO_ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detect", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )


def test_help_lists_commands_with_descriptions():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "config" in result.stdout and "data" in result.stdout


def test_config_show_prints_resolved_yaml(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show", "voc_ssd512", "--set", "train.epochs=3"])
    assert exit_info.value.code == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["epochs"] == 3
    assert shown["input"]["size"] == 512  # from voc_ssd512 itself
    assert shown["model"]["arch"] == "ssd"  # from its base


def test_user_error_is_one_line_without_traceback():
    result = run_cli("config", "show", "voc_faster_rcnn", "--set", "train.lrr=1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown key 'train.lrr'")
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run_cli("--debug", "config", "show", "voc_faster_rcnn", "--set", "train.lrr=1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_usage_error_exits_2():
    result = run_cli("config", "show")
    assert result.returncode == 2


@pytest.mark.parametrize("override, key", [
    ("train.clip_grad_norm=-1", "train.clip_grad_norm"), ("train.lr=1e400", "train.lr"),
    ("train.epochs=true", "train.epochs"), ("model.ssd.first_scale=0", "model.ssd.first_scale"),
    ("data.classes=[]", "data.classes"), ("data.classes=[cat,dog,cat]", "data.classes"),
])
def test_train_refuses_a_senseless_number_before_any_work(override, key, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", "voc_ssd300", "--out", str(tmp_path / "run"), "--set", override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: bad value for '{key}' in --set {override}:") and "\n" not in err
    assert not (tmp_path / "run").exists()
