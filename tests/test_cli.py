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
