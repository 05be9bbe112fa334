"""The main job (tools/main_job.sh): both of its configs resolve, build their CPU-sized models, and
keep at least 100 validation images; the script parses and defaults to the SSD."""

from __future__ import annotations

import subprocess

import pytest
import torch
import yaml

from detect.cli import main
from detect.config import DataConfig, load_config
from detect.models.build import build_model
from tests.conftest import REPO_ROOT

MAIN_JOB_CONFIGS = ("synthetic_ssd", "synthetic_faster_rcnn")


@pytest.mark.parametrize("name", MAIN_JOB_CONFIGS)
def test_config_resolves_to_a_tiny_resnet_model_and_enough_validation_images(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show", name])  # what main_job.sh reads data.root from
    assert exit_info.value.code == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    config = load_config(name)
    assert shown["data"]["root"] == config.data.root != DataConfig().root  # not a stale data/shapes
    synth = config.data.synth
    assert round(synth.num_images * synth.val_fraction) >= 100
    assert (config.model.backbone, config.model.pretrained, config.data.format) == ("tiny_resnet", "none", "synthetic")
    model = build_model(config.model, config.input, 5).eval()
    side = config.input.size if config.input.resize == "fixed" else config.input.min_size
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, side, side), torch.tensor([[side, side]]))
    detections = model.postprocess(outputs, torch.tensor([[side, side]]), torch.ones(1, 2))
    assert detections["boxes"].shape[0] == 1 and detections["boxes"].shape[2] == 4


def test_script_parses_and_defaults_to_the_ssd():
    script = REPO_ROOT / "tools" / "main_job.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    assert "CONFIG=${CONFIG:-synthetic_ssd}" in script.read_text()
