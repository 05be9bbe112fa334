"""ONNX export: onnxruntime gives the PyTorch model's detections, for both heads (Faster R-CNN also on
feature pyramids), dark image included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detect.config import load_config
from detect.detections.predict import predict_batch
from detect.errors import DetectError
from detect.export import export_input_size, export_model, parse_image_size
from detect.infer import Detector
from detect.models.build import build_model
from tests.infer.conftest import CLASS_NAMES, dark_image, noise_image, rigged
from tests.infer.test_infer import run_cli

onnx = pytest.importorskip("onnx", reason="ONNX export needs the export extra: pip install -e '.[export]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra: pip install -e '.[export]'")


def padded_batch(detector: Detector, images: list[np.ndarray], height: int, width: int):
    """The eval pipeline's batch, zero-padded to the exported H x W (what a deployment feeds)."""
    batch, image_sizes, scales = detector.preprocess(images)
    batch = F.pad(batch, (0, width - batch.shape[3], 0, height - batch.shape[2]))
    return batch, image_sizes, scales


@pytest.mark.parametrize("arch", ["ssd", "faster_rcnn"])
def test_onnxruntime_matches_pytorch(tiny_models, tmp_path, arch):
    model, config = tiny_models[arch]
    model = rigged(model)
    path = tmp_path / f"{arch}.onnx"
    info = export_model(model, config, CLASS_NAMES, path, dynamic_batch=True)
    detector = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)
    images = [noise_image(60, 80, seed=1), dark_image(40, 40), noise_image(90, 50, seed=2)]
    batch, image_sizes, scales = padded_batch(detector, images, info["height"], info["width"])

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels, counts = session.run(
        None, {"images": batch.numpy(), "image_sizes": image_sizes.numpy(), "scales": scales.numpy()}
    )
    expected = predict_batch(model, batch, image_sizes, scales)

    max_detections = info["max_detections"]
    assert boxes.shape == (3, max_detections, 4) and scores.shape == labels.shape == (3, max_detections)
    assert counts.tolist() == [len(e["scores"]) for e in expected]
    assert counts[1] == 0 and counts[0] > 0 and counts[2] > 0  # the dark image has no detections
    for index, reference in enumerate(expected):
        count = counts[index]
        np.testing.assert_allclose(boxes[index, :count], reference["boxes"].numpy(), atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(scores[index, :count], reference["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(labels[index, :count], reference["labels"].numpy())
        # Empty slots are zero.
        assert not boxes[index, count:].any() and not scores[index, count:].any() and not labels[index, count:].any()

    # Batch of one (the dynamic batch axis) gives the same as in the batch of three.
    single = session.run(None, {"images": batch[:1].numpy(), "image_sizes": image_sizes[:1].numpy(),
                                "scales": scales[:1].numpy()})
    np.testing.assert_allclose(single[0][0], boxes[0], atol=1e-3)


# Feature-pyramid Faster R-CNNs, small: backbone -> (config, overrides).
FPN_MODELS = {
    # RoIs pooled from four levels.
    "resnet18_fpn": ("voc_faster_rcnn_fpn", [
        "model.backbone=resnet18_fpn", "input.min_size=64", "input.max_size=96",
        "model.anchors.sizes=[16,32,64,128,256]", "model.rpn.pre_nms_top_n_test=100"]),
    # Anchor sizes per level and the 0.05 proposal score threshold.
    "mobilenet_v3_large_320_fpn": ("voc_faster_rcnn_mobilenet320", ["input.min_size=160", "input.max_size=192"]),
}
FPN_COMMON = ["model.pretrained=none", "model.rpn.post_nms_top_n_test=20", "model.roi_heads.detections_per_img=30",
              "model.roi_heads.score_threshold=0.0"]


def fpn_model(backbone: str):
    """A random-weight FPN detector for CLASS_NAMES and its config."""
    name, overrides = FPN_MODELS[backbone]
    config = load_config(name, FPN_COMMON + overrides)
    torch.manual_seed(0)
    model = build_model(config.model, config.input, len(CLASS_NAMES)).eval()
    if backbone.startswith("mobilenet"):
        spread_mobilenet_scores(model, config.input.max_size)
    return model, config


@torch.no_grad()
def spread_mobilenet_scores(model, size: int) -> None:
    """From scratch, MobileNetV3's random BatchNorm statistics leave every RoI with nearly the same
    score, and near-ties may be broken either way by the two runtimes. BatchNorm statistics of a random
    batch and wider RPN and classifier weights spread the scores; the objectness bias (-5) makes the
    proposal score threshold drop some proposals."""
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.reset_running_stats()
        norm.momentum = None  # a plain average: this one batch's statistics
    model.train().backbone(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3)))
    model.eval()
    torch.nn.init.normal_(model.rpn.head.conv.weight, std=0.05)
    torch.nn.init.normal_(model.rpn.head.objectness.weight, std=0.05)
    torch.nn.init.constant_(model.rpn.head.objectness.bias, -5.0)
    torch.nn.init.normal_(model.roi_heads.cls_score.weight, std=0.2)


@pytest.mark.parametrize("backbone", sorted(FPN_MODELS))
def test_fpn_onnxruntime_matches_pytorch(tmp_path, backbone):
    model, config = fpn_model(backbone)
    path = tmp_path / f"{backbone}.onnx"
    info = export_model(model, config, CLASS_NAMES, path, dynamic_batch=True)
    detector = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)
    batch, image_sizes, scales = padded_batch(
        detector, [noise_image(60, 80, seed=1), noise_image(90, 50, seed=2)], info["height"], info["width"])

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels, counts = session.run(
        None, {"images": batch.numpy(), "image_sizes": image_sizes.numpy(), "scales": scales.numpy()})
    expected = predict_batch(model, batch, image_sizes, scales)

    assert counts.tolist() == [len(e["scores"]) for e in expected] and counts.min() > 0
    for index, reference in enumerate(expected):
        count = counts[index]
        np.testing.assert_allclose(boxes[index, :count], reference["boxes"].numpy(), atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(scores[index, :count], reference["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(labels[index, :count], reference["labels"].numpy())
    if backbone.startswith("mobilenet"):  # the proposal score threshold is part of the graph, and bites
        with torch.no_grad():
            assert (model(batch, image_sizes)["roi_valid"].sum(dim=1) < 20).all()


def test_ssd_onnx_equals_the_detector_api(tiny_models, tmp_path):
    """SSD's input is a fixed square: the Detector's own batch is exactly what the ONNX model takes."""
    model, config = tiny_models["ssd"]
    path = tmp_path / "ssd.onnx"
    export_model(model, config, CLASS_NAMES, path, batch_size=2)
    detector = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)
    images = [noise_image(50, 70, seed=3), noise_image(64, 64, seed=4)]
    batch, image_sizes, scales = detector.preprocess(images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels, counts = session.run(
        None, {"images": batch.numpy(), "image_sizes": image_sizes.numpy(), "scales": scales.numpy()})
    for index, found in enumerate(detector(images)):
        assert counts[index] == len(found)
        np.testing.assert_allclose(boxes[index, : len(found)], found.boxes, atol=1e-3)
        np.testing.assert_array_equal(labels[index, : len(found)], found.labels)
    metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["class_names"]) == CLASS_NAMES
    assert json.loads(metadata["input_size"]) == [64, 64] and metadata["resize"] == "fixed"
    assert json.loads(metadata["mean"]) == pytest.approx(list(config.input.mean))


def test_input_size_rules(tiny_models):
    ssd_input, frcnn_input = tiny_models["ssd"][1].input, tiny_models["faster_rcnn"][1].input
    assert export_input_size(ssd_input) == (64, 64)
    assert export_input_size(frcnn_input) == (96, 96)  # max_size 96, padded to 32
    assert export_input_size(frcnn_input, (70, 100)) == (96, 128)
    with pytest.raises(DetectError, match="fixed-size config takes input.size 64 x 64"):
        export_input_size(ssd_input, (100, 100))
    assert parse_image_size("608,1024") == (608, 1024) and parse_image_size("640") == (640, 640)
    assert parse_image_size(None) is None
    with pytest.raises(DetectError, match="--image-size 'big'"):
        parse_image_size("big")


def test_cli_export(checkpoints, tmp_path, capsys):
    output = tmp_path / "frcnn.onnx"
    code, stdout, _ = run_cli(["export", str(checkpoints["faster_rcnn"]), "--out", str(output),
                               "--image-size", "64,96", "--opset", "17"], capsys)
    assert code == 0 and "[1, 3, 64, 96]" in stdout and output.is_file()
    inputs = onnx.load(str(output)).graph.input
    assert [dim.dim_value for dim in inputs[0].type.tensor_type.shape.dim] == [1, 3, 64, 96]
    for args, message in [
        (["--opset", "10"], "--opset 10: supported opsets are 12 to 20"),
        (["--opset", "11"], "--opset 11: supported opsets are 12 to 20 (onnxruntime has no Clip-11 kernel"),
        (["--opset", "25"], "--opset 25: supported opsets are 12 to 20"),
        (["--format", "tflite"], "--format tflite: unknown export format; choose from onnx"),
    ]:
        code, _, stderr = run_cli(
            ["export", str(checkpoints["ssd"]), *args, "--out", str(tmp_path / "x.onnx")], capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
        assert not (tmp_path / "x.onnx").exists()


def test_cli_export_says_wrote_only_for_a_model_that_loads(checkpoints, tmp_path, capsys, monkeypatch):
    """A graph onnxruntime refuses is not written (nor a temporary left), and the error names why."""
    import onnxruntime

    def refuse(path, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Clip(11)")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    output = tmp_path / "ssd.onnx"
    code, stdout, stderr = run_cli(["export", str(checkpoints["ssd"]), "--out", str(output)], capsys)
    assert code == 2 and "wrote" not in stdout
    assert stderr.strip() == (f"error: {output}: the model exported with opset 17 does not load in onnxruntime "
                              f"([ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                              f"Clip(11)); not written")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_to_a_full_disk_is_one_line_and_leaves_nothing(checkpoints, tmp_path):
    from tests.full_disk import run_on_full_disk

    folder = tmp_path / "full"
    output = folder / "ssd.onnx"
    done = run_on_full_disk(["export", str(checkpoints["ssd"]), "--out", str(output)], folder, "64k")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (f"error: no space left on {folder}: ssd.onnx not written (free some space, or "
                                   f"choose another folder)")
    assert done.files == {}
