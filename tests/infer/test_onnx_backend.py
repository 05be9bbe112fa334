"""`detect infer --backend onnxruntime`: the exported model gives the PyTorch backend's detections."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from detect.config import config_to_dict, load_config
from detect.errors import DetectError
from detect.export import export_model
from detect.infer import Detector
from detect.models.build import build_model
from tests.infer.conftest import CLASS_NAMES, dark_image, noise_image, rigged
from tests.infer.test_infer import run_cli

pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the export extra: pip install -e '.[export]'")
from detect.backends.onnxruntime_backend import OnnxRuntimeModel  # noqa: E402
from detect.infer import load_detector  # noqa: E402

IMAGES = [noise_image(60, 80, seed=1), dark_image(40, 40), noise_image(90, 50, seed=2), noise_image(64, 64, seed=3)]


def tie_order(detections) -> np.ndarray:
    """An order of the detections that does not depend on how a backend breaks ties between equal
    scores (untrained models give many): by score, then label and box, at the tolerances compared."""
    boxes = np.round(np.asarray(detections.boxes, np.float64), 2)
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], detections.labels,
                       -np.round(np.asarray(detections.scores, np.float64), 4)))


def assert_same_detections(found, expected):
    assert [len(f) for f in found] == [len(e) for e in expected]
    for ours, reference in zip(found, expected):
        mine, theirs = tie_order(ours), tie_order(reference)
        np.testing.assert_allclose(ours.boxes[mine], reference.boxes[theirs], atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(ours.scores[mine], reference.scores[theirs], atol=1e-5)
        np.testing.assert_array_equal(ours.labels[mine], reference.labels[theirs])
        assert [ours.class_names[i] for i in mine] == [reference.class_names[i] for i in theirs]


@pytest.fixture(scope="module")
def tiny_ssdlite(tmp_path_factory):
    """A checkpoint of a 64 px SSDlite (MobileNetV3-Large, three maps), random weights."""
    config = load_config("synthetic_ssdlite", ["input.size=64", "model.ssd.aspect_ratios=[[2],[2],[2]]",
                                               "model.ssd.score_threshold=0.2", "model.ssd.detections_per_img=50"])
    torch.manual_seed(0)
    model = build_model(config.model, config.input, len(CLASS_NAMES))
    # SSDlite's N(0, 0.03) start gives every location the same scores: ties that either backend may
    # break its own way. BatchNorm statistics measured on noise images make the outputs vary.
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.reset_running_stats()
            norm.momentum = None
    with torch.no_grad():
        model.train().trunk(torch.randn(4, 3, 64, 64))
    model.eval()
    path = tmp_path_factory.mktemp("ssdlite") / "ssdlite.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "class_names": CLASS_NAMES}, path)
    return path


def test_checkpoint_through_onnxruntime_equals_pytorch(checkpoints, tiny_ssdlite):
    for path in (checkpoints["ssd"], tiny_ssdlite):
        expected = Detector.from_checkpoint(path, device="cpu", score_threshold=0.0, batch_size=3)(IMAGES)
        found = load_detector(path, "onnxruntime", score_threshold=0.0, batch_size=3)(IMAGES)
        assert sum(len(f) for f in found) > 0
        assert_same_detections(found, expected)


def test_fixed_batch_onnx_file_takes_any_number_of_images(tiny_models, tmp_path):
    model, config = tiny_models["ssd"]
    model = rigged(model)  # finds nothing in dark images
    path = tmp_path / "ssd_b2.onnx"
    export_model(model, config, CLASS_NAMES, path, batch_size=2)
    assert OnnxRuntimeModel(path).batch_size == 2
    expected = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)(IMAGES[:3])
    found = load_detector(path, "onnxruntime", score_threshold=0.0, batch_size=3)(IMAGES[:3])  # chunks of 2: 2 + 1
    assert len(found[1]) == 0 and len(found[0]) > 0
    assert_same_detections(found, expected)


def test_cli_infer_with_onnxruntime(checkpoints, tmp_path, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), noise_image(40, 50, seed=0))
    onnx_path = tmp_path / "ssd.onnx"
    assert run_cli(["export", str(checkpoints["ssd"]), "--out", str(onnx_path), "--dynamic-batch"], capsys)[0] == 0
    outputs = {}
    for backend, model_path in (("torch", checkpoints["ssd"]), ("onnxruntime", onnx_path)):
        out = tmp_path / backend
        code, stdout, _ = run_cli(["infer", str(model_path), str(image), "--out", str(out), "--json",
                                   "--score-threshold", "0.3", "--backend", backend, "--device", "cpu", "-q"], capsys)
        assert code == 0, stdout
        outputs[backend] = json.loads((out / "detections.json").read_text())["images"][0]["detections"]
    assert outputs["torch"] and len(outputs["torch"]) == len(outputs["onnxruntime"])
    for ours, reference in zip(outputs["onnxruntime"], outputs["torch"]):
        assert ours["class_name"] == reference["class_name"]
        assert ours["score"] == pytest.approx(reference["score"], abs=1e-5)


def test_backend_errors_are_one_line(checkpoints, tmp_path, capsys):
    not_onnx = tmp_path / "bad.onnx"
    not_onnx.write_bytes(b"not a model")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), noise_image(20, 20, seed=0))
    cases = [
        (["--backend", "nope"], str(checkpoints["ssd"]),
         "--backend nope: unknown backend; choose from onnxruntime, openvino, tensorrt, torch"),
        ([], str(tmp_path / "model.tflite"), "model.tflite: no backend reads '.tflite' files"),
        (["--backend", "onnxruntime"], str(not_onnx), "bad.onnx: not a readable ONNX model"),
        (["--backend", "onnxruntime"], str(tmp_path / "none.onnx"), "none.onnx: ONNX file not found"),
    ]
    for extra, model_path, message in cases:
        code, _, stderr = run_cli(["infer", model_path, str(image), "--out", str(tmp_path / "o"), "-q", *extra], capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
    with pytest.raises(DetectError, match="predicts only"):
        OnnxRuntimeModel.forward(None, torch.zeros(1, 3, 8, 8), torch.ones(1, 2), targets=[{}])


def test_graph_metadata_that_is_missing_or_corrupt_is_one_line(checkpoints, tmp_path):
    from types import SimpleNamespace

    from detect.detections.graph import loaded_from_metadata

    path = tmp_path / "model.onnx"
    good = {"config": json.dumps(config_to_dict(load_config("synthetic_ssd"))), "class_names": json.dumps(CLASS_NAMES)}
    assert loaded_from_metadata(SimpleNamespace(metadata=good), path).class_names == CLASS_NAMES
    cases = [({"class_names": good["class_names"]}, "no 'config' in its metadata"),
             ({"config": good["config"]}, "no 'class_names' in its metadata"),
             ({**good, "config": "{cut short"}, "its metadata 'config' is not valid JSON"),
             ({**good, "category_ids": "[1, 2"}, "its metadata 'category_ids' is not valid JSON")]
    for metadata, message in cases:
        with pytest.raises(DetectError, match=message) as caught:
            loaded_from_metadata(SimpleNamespace(metadata=metadata), path)
        assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_an_empty_batch_is_answered_without_running_a_dynamic_batch_graph(checkpoints, tmp_path):
    """onnxruntime refuses batch 0 in the graph's reshapes (docs/export.md): the backend answers it
    with empty outputs of the graph's shapes, and the Detector with no detections."""
    from detect.export import export_onnx

    path = tmp_path / "ssd.onnx"
    export_onnx(checkpoints["ssd"], path, dynamic_batch=True, batch_size=2)
    model = OnnxRuntimeModel(path)
    outputs = model(torch.zeros(0, 3, model.height, model.width), torch.zeros(0, 2, dtype=torch.int64))
    slots = int(model.metadata["max_detections"])
    assert slots > 0
    assert outputs["boxes"].shape == (0, slots, 4) and outputs["scores"].shape == (0, slots)
    assert outputs["labels"].shape == (0, slots) and outputs["num_detections"].shape == (0,)
    detector = load_detector(path, "onnxruntime", "cpu")
    assert detector([]) == []
