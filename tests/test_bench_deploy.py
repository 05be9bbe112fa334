"""tools/bench_deploy.py: a checkpoint exported to every CPU runtime and precision, and one table of
them all (rows named by backend and precision, speed against PyTorch's row)."""

from __future__ import annotations

import json

import pytest
import torch

from detect.config import config_to_dict
from detect.models.build import build_model
from tests.conftest import load_tool
from tests.infer.conftest import CLASS_NAMES, tiny_config

pytest.importorskip("onnxruntime", reason="needs the export extra")
pytest.importorskip("nncf", reason="needs the openvino extra")


def test_every_runtime_and_precision_in_one_table(tmp_path, capsys):
    torch.manual_seed(0)
    config = tiny_config("ssd")
    model = build_model(config.model, config.input, len(CLASS_NAMES)).eval()
    checkpoint = tmp_path / "ssd.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "class_names": CLASS_NAMES}, checkpoint)
    sets = [f"data.root={tmp_path / 'shapes'}", "data.synth.num_images=16", "data.synth.image_size=64",
            "data.num_workers=0", "data.unknown_class=skip", f"data.classes=[{','.join(CLASS_NAMES)}]"]
    out = tmp_path / "deploy"
    code = load_tool("bench_deploy").main([str(checkpoint), "--out", str(out), "--calibration", "4",
                                            *[arg for value in sets for arg in ("--set", value)]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "deploy.json").read_text())
    assert [(row["backend"], row["precision"]) for row in report["rows"]] == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")]
    assert sorted(report["int8_reports"]) == ["int8.onnx", "int8.xml"]
    assert all(entry["calibration_images"] == 4 for entry in report["int8_reports"].values())
    table = [line for line in captured.out.splitlines() if line.startswith("| ")]
    assert len(table) == 6 and table[1].rstrip(" |").endswith("1.00x")  # header, then PyTorch's row first


@pytest.mark.parametrize("option", ["--calibration", "--threads", "--batch-size", "--max-images"])
def test_counts_below_one_are_refused_before_anything_runs(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        load_tool("bench_deploy").main([str(tmp_path / "none.pt"), "--out", str(tmp_path / "out"), option, "0"])
    assert exited.value.code == 2 and f"{option} must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
