"""check_resumable: what a resume may change, for checkpoints written by this version and older ones."""

from __future__ import annotations

import pytest

from detect.config import FasterRCNNModelConfig, SSDModelConfig, config_to_dict, load_config
from detect.engine.resume_check import check_resumable
from detect.errors import CheckpointError


def _saved_by_an_older_version(config) -> dict:
    """The config as versions before per-architecture sections saved it: every detector's model
    sections, both resize modes' sizes, and the old `score_thresh` spelling."""
    saved = config_to_dict(config)
    every = {**FasterRCNNModelConfig().model_dump(mode="json"), **SSDModelConfig().model_dump(mode="json")}
    saved["model"] = {**every, **saved["model"]}
    saved["model"]["rpn"]["score_thresh"] = saved["model"]["rpn"].pop("score_threshold")
    saved["input"] = {"min_size": 600, "max_size": 1000, "size": 300, **saved["input"]}
    return saved


@pytest.mark.parametrize("name", ["synthetic_ssd", "synthetic_faster_rcnn"])
def test_an_older_checkpoint_resumes_with_no_change_reported(name):
    config = load_config(name)
    assert check_resumable({"config": _saved_by_an_older_version(config)}, config, "old.pt") == []


def test_the_allowed_and_the_refused_changes():
    config = load_config("synthetic_ssd")
    saved = {"config": config_to_dict(config)}
    longer = load_config("synthetic_ssd", ["train.epochs=40"])
    assert check_resumable(saved, longer, "a.pt") == [("train.epochs", config.train.epochs, 40)]
    with pytest.raises(CheckpointError, match=r"^a.pt: cannot resume with input.size 192 -> 256"):
        check_resumable(saved, load_config("synthetic_ssd", ["input.size=256"]), "a.pt")
