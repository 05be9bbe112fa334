"""The exporter `detect export` depends on is there: the installed torch lies in pyproject.toml's range
and still exports through the TorchScript-based exporter. Either failing names the cause, the day a
torch upgrade would otherwise break `export`, `infer --backend onnxruntime` and `serve` together."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import tomllib
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from detect.errors import DetectError
from detect.export import export_model
from detect.export import onnx as onnx_export

pytest.importorskip("onnx", reason="ONNX export needs the export extra: pip install -e '.[export]'")

ROOT = Path(__file__).resolve().parents[2]


def torch_requirement() -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(line) for line in dependencies if Requirement(line).name == "torch")


def test_installed_torch_is_within_the_bound():
    requirement = torch_requirement()
    installed = Version(torch.__version__.split("+")[0])
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"torch {installed} is outside pyproject.toml's {requirement}: detect export needs the TorchScript-based "
        f"ONNX exporter, which that range was checked to have")
    assert any(spec.operator == "<" for spec in requirement.specifier), "pyproject.toml must bound torch from above"


def test_torch_still_has_the_torchscript_exporter(tiny_models, tmp_path):
    parameters = inspect.signature(torch.onnx.export).parameters
    assert "dynamo" in parameters, (
        f"torch {torch.__version__}: torch.onnx.export takes no `dynamo` argument any more, so the TorchScript-based "
        f"exporter detect export uses is gone (detect/export/onnx.py)")
    model, config = tiny_models["ssd"]
    info = export_model(model, config, ["a", "b"], tmp_path / "ssd.onnx")
    assert (tmp_path / "ssd.onnx").stat().st_size > 0 and info["max_detections"] > 0


def test_a_torch_without_the_exporter_is_one_line(tiny_models, tmp_path, monkeypatch):
    def export_without_dynamo(module, inputs, path, **options):
        if "dynamo" in options:
            raise TypeError("export() got an unexpected keyword argument 'dynamo'")

    monkeypatch.setattr(onnx_export.torch.onnx, "export", export_without_dynamo)
    model, config = tiny_models["ssd"]
    with pytest.raises(DetectError, match="no longer has the TorchScript-based ONNX exporter") as caught:
        export_model(model, config, ["a", "b"], tmp_path / "ssd.onnx")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ssd.onnx").exists()
