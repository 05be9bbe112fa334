"""The detector registry: every `model.arch` the config allows has a family, and nothing else does;
an unknown name is one line listing the families; each family declares what weights, export and
fusing need (DetectionModel)."""

from __future__ import annotations

import typing

import pytest
import torch

from detect.config import load_config
from detect.config.model_sections import MODEL_SECTIONS
from detect.errors import DetectError
from detect.models.build import build_model
from detect.models.detection_model import DetectionModel
from detect.models.registry import DETECTORS


def test_the_registry_holds_exactly_the_architectures_the_config_allows():
    assert sorted(DETECTORS) == sorted(MODEL_SECTIONS)
    for arch, section in MODEL_SECTIONS.items():
        assert arch in typing.get_args(section.model_fields["arch"].annotation)


def test_an_unknown_architecture_is_one_line_naming_the_families():
    config = load_config("synthetic_ssd")
    model_cfg = config.model.model_construct(**{**config.model.__dict__, "arch": "retinanet"})
    families = ", ".join(sorted(DETECTORS))
    assert {"faster_rcnn", "ssd", "ssdlite"} <= set(DETECTORS)
    with pytest.raises(DetectError, match=rf"^model.arch retinanet: unknown detector architecture; choose from "
                                          rf"{families}$"):
        build_model(model_cfg, config.input, 5)


@pytest.mark.parametrize("config_name", ["synthetic_faster_rcnn", "synthetic_ssd", "synthetic_ssdlite"])
def test_each_family_declares_class_rows_that_its_built_model_has(config_name):
    """weights.py carries rows by class name through `class_rows`: each declared layer must exist in the
    model of that family, with C + 1 (or, without background, C) classes per block."""
    config = load_config(config_name)
    model = build_model(config.model, config.input, 5)
    assert isinstance(model, DetectionModel) and type(model) is DETECTORS[config.model.arch]
    state = model.state_dict()
    for rows in model.class_rows:
        keys = rows.keys(state)
        assert keys, rows.pattern
        for key in keys:
            assert state[key].shape[0] % (rows.classes(5) * rows.per_class) == 0


def test_export_and_fusing_ask_the_model_not_its_type():
    """A detector family that says it does not export is refused in one line; anything that is not a
    DetectionModel gets no NHWC switch from fold_batchnorm."""
    from detect.export.onnx import build_export_module
    from detect.models.fuse import fold_batchnorm

    config = load_config("synthetic_ssd")
    model = build_model(config.model, config.input, 2)
    assert build_export_module(model).model is model

    class NotExported(type(model)):
        exportable = False

    model.__class__ = NotExported
    with pytest.raises(DetectError, match="^export: no ONNX export for a NotExported$"):
        build_export_module(model)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert not hasattr(fold_batchnorm(plain), "nhwc_inference")
