"""TensorRT: `detect export --format tensorrt` and `--backend tensorrt` give the PyTorch model's
detections on a GPU machine with TensorRT (gpu-marked); elsewhere both are one line saying what is
missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from detect.errors import DetectError
from detect.infer import Detector
from tests.infer.conftest import noise_image
from tests.infer.test_infer import run_cli

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the refusal where TensorRT or a GPU is missing")
def test_without_tensorrt_export_and_backend_are_one_line(checkpoints, tmp_path, capsys):
    code, _, stderr = run_cli(["export", str(checkpoints["ssd"]), "--format", "tensorrt", "--out",
                               str(tmp_path / "ssd.engine")], capsys)
    assert code == 2 and stderr.count("\n") == 1
    assert "TensorRT is not installed" in stderr or "TensorRT needs a CUDA GPU" in stderr
    assert not (tmp_path / "ssd.engine").exists()
    with pytest.raises(DetectError, match="TensorRT"):
        Detector.from_file(tmp_path / "ssd.engine")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT and a CUDA GPU (run with -m gpu on a GPU machine)")
def test_tensorrt_engine_matches_pytorch(checkpoints, tmp_path, capsys):
    from tests.infer.test_onnx_backend import assert_same_detections

    engine = tmp_path / "ssd.engine"
    code, stdout, stderr = run_cli(["export", str(checkpoints["ssd"]), "--format", "tensorrt", "--dynamic-batch",
                                    "--out", str(engine)], capsys)
    assert code == 0, stderr
    assert engine.is_file() and engine.with_name("ssd.engine.json").is_file()
    images = [noise_image(60, 80, seed=1), noise_image(90, 50, seed=2), noise_image(64, 64, seed=3)]
    expected = Detector.from_file(checkpoints["ssd"], device="cpu", score_threshold=0.3)(images)
    found = Detector.from_file(engine, score_threshold=0.3)(images)  # auto: .engine is TensorRT's
    assert_same_detections(found, expected)


def test_engine_metadata_that_is_missing_or_corrupt_is_one_line(tmp_path):
    """The metadata beside an engine is read before anything needs TensorRT, so this runs anywhere."""
    from detect.backends.tensorrt_backend import read_engine_metadata

    engine = tmp_path / "ssd.engine"
    with pytest.raises(DetectError, match=r"ssd\.engine\.json: not found"):
        read_engine_metadata(engine)
    for text, message in [("{not json", "not readable as JSON"), ("[1, 2]", "expected a JSON object")]:
        engine.with_name("ssd.engine.json").write_text(text)
        with pytest.raises(DetectError, match=message) as caught:
            read_engine_metadata(engine)
        assert "\n" not in str(caught.value)
    engine.with_name("ssd.engine.json").write_text('{"class_names": "[\\"a\\"]"}')
    assert read_engine_metadata(engine) == {"class_names": '["a"]'}
