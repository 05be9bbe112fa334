"""The detector registry: every `model.arch` the config allows has a builder, and nothing else does;
an unknown name is one line listing the families."""

from __future__ import annotations

import typing

import pytest

from detect.config import ModelConfig, load_config
from detect.errors import DetectError
from detect.models.build import build_model
from detect.models.registry import DETECTORS


def test_the_registry_holds_exactly_the_architectures_the_config_allows():
    allowed = typing.get_args(ModelConfig.model_fields["arch"].annotation)
    assert sorted(DETECTORS) == sorted(allowed)


def test_an_unknown_architecture_is_one_line_naming_the_families():
    config = load_config("synthetic_ssd")
    model_cfg = config.model.model_construct(**{**config.model.__dict__, "arch": "retinanet"})
    with pytest.raises(DetectError, match=r"^model.arch retinanet: unknown detector architecture; choose from "
                                          r"faster_rcnn, ssd, ssdlite$"):
        build_model(model_cfg, config.input, 5)
