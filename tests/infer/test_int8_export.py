"""`detect export --int8`: the INT8 model of each runtime (onnxruntime QDQ, OpenVINO NNCF) keeps the
float model's detections by mAP, with its postprocess and NMS in float; the export prints and writes
the float and INT8 figures; what cannot be quantized is one line and no file.

Tolerance, INT8 against float (docs/export.md): the INT8 model's detections scored against the float
model's (score >= 0.3, as ground truth) reach an mAP@0.5 of at least 0.8 on six noise images, for
this random-weight SSD. The benchmark's bar on trained models is stricter: within 1 point of the float
mAP (docs/benchmarks.md, "Deployment: backends and INT8")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detect.errors import DetectError
from detect.evaluation.evaluator import DetectionEvaluator
from detect.export.int8 import report_path_of
from detect.infer import Detector
from tests.infer.conftest import CLASS_NAMES
from tests.infer.test_infer import run_cli

onnx = pytest.importorskip("onnx", reason="INT8 export needs the export extra: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="INT8 export needs the export extra: pip install -e '.[export]'")

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}
AGREEMENT_MAP = 0.8


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory):
    """Synthetic shapes (generated on first use) for calibration and the report: 20 training and 4
    validation images; the checkpoint knows three of the five shapes."""
    root = tmp_path_factory.mktemp("int8_data") / "shapes"
    return [f"data.root={root}", "data.synth.num_images=24", "data.synth.image_size=64", "data.num_workers=0",
            "data.unknown_class=skip"]


def sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def agreement_map(reference: list, found: list, images: list) -> float:
    """mAP@0.5 of `found` scored against `reference`'s detections as the ground truth."""
    evaluator = DetectionEvaluator(CLASS_NAMES, metrics=["voc12"], iou_thresh=0.5)
    evaluator.process(
        [{"boxes": torch.as_tensor(f.boxes), "scores": torch.as_tensor(f.scores), "labels": torch.as_tensor(f.labels)}
         for f in found],
        [{"boxes": torch.as_tensor(r.boxes), "labels": torch.as_tensor(r.labels), "orig_size": image.shape[:2],
          "image_id": index} for index, (r, image) in enumerate(zip(reference, images))])
    return evaluator.evaluate()["voc12"]["map"]


@pytest.mark.parametrize("format", sorted(FORMATS))
def test_int8_export_keeps_the_float_detections(format, checkpoints, data_overrides, tmp_path, capsys):
    if format == "openvino":
        pytest.importorskip("nncf", reason="OpenVINO INT8 needs the openvino extra: pip install -e '.[openvino]'")
    output = tmp_path / f"ssd.int8{FORMATS[format]}"
    code, stdout, stderr = run_cli(["export", str(checkpoints["ssd"]), "--format", format, "--int8", "--calibration",
                                    "8", "--dynamic-batch", "--out", str(output), *sets(data_overrides)], capsys)
    assert code == 0, stderr
    assert "fp32:" in stdout and "int8:" in stdout and "images/s" in stdout and f"wrote {output}" in stdout
    report = json.loads(report_path_of(output).read_text())
    assert [row["precision"] for row in report["rows"]] == ["fp32", "int8"]
    assert report["calibration_images"] == 8 and report["split"] == "val" and report["num_images"] == 4
    assert report["quantized"]["int8"] == report["quantized"]["quantizable"] > 0
    assert all(row["images_per_s"] > 0 and 0.0 <= row["map"] <= 1.0 for row in report["rows"])
    assert report["speedup"] == pytest.approx(report["rows"][1]["images_per_s"] / report["rows"][0]["images_per_s"])

    int8 = Detector.from_file(output, score_threshold=0.01)
    assert int8.model.metadata["precision"] == "int8" and int8.class_names == CLASS_NAMES
    images = [np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8) for seed in range(6)]
    reference = Detector.from_file(checkpoints["ssd"], score_threshold=0.3)(images)
    assert sum(len(r) for r in reference) > 10
    assert agreement_map(reference, int8(images), images) >= AGREEMENT_MAP


def test_postprocess_and_nms_stay_float(checkpoints, data_overrides, tmp_path):
    """In the INT8 ONNX graph, values are quantized only where a convolution (or matrix product) reads or
    writes them: box decoding, the postprocess and NMS compute in float."""
    from detect.evaluation.int8_report import export_int8
    from detect.export.int8 import QUANTIZED_ONNX_OPS

    output = tmp_path / "ssd.int8.onnx"
    export_int8("onnx", checkpoints["ssd"], output, calibration=4, overrides=data_overrides)
    graph = onnx.load(str(output)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    readers: dict[str, set] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    dequantized_copy = {node.input[0]: node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    quantize_nodes = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    assert quantize_nodes
    for node in quantize_nodes:
        tensor, copy = node.input[0], dequantized_copy[node.output[0]]
        assert (producer.get(tensor) in QUANTIZED_ONNX_OPS or readers.get(copy, set()) & set(QUANTIZED_ONNX_OPS)), \
            tensor
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    nms = [node for node in graph.node if node.op_type == "NonMaxSuppression"]
    assert nms and not any(set(node.input) & dequantized for node in nms)


def test_openvino_leaves_the_postprocess_float(checkpoints, data_overrides, tmp_path):
    """In the INT8 IR, every quantized input (FakeQuantize, or int8 weights) feeds a node of the network;
    none feeds the postprocess, which the export traces outside the network's modules."""
    pytest.importorskip("nncf", reason="OpenVINO INT8 needs the openvino extra: pip install -e '.[openvino]'")
    import openvino

    from detect.evaluation.int8_report import export_int8

    output = tmp_path / "ssd.int8.xml"
    export_int8("openvino", checkpoints["ssd"], output, calibration=4, overrides=data_overrides)
    model = openvino.Core().read_model(str(output))
    quantizers = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert quantizers
    for quantizer in quantizers:
        for target in quantizer.output(0).get_target_inputs():
            assert target.get_node().get_friendly_name().startswith("/model/"), quantizer.get_friendly_name()


def test_calibration_takes_the_whole_split_when_it_is_smaller(checkpoints, data_overrides, tmp_path):
    from detect.evaluation.int8_report import export_int8

    info = export_int8("onnx", checkpoints["ssd"], tmp_path / "ssd.int8.onnx", calibration=1000,
                       overrides=data_overrides)
    assert info["report"]["calibration_images"] == 20  # the training split: 24 images less 4 for validation


def test_what_cannot_be_quantized_is_one_line_and_no_file(checkpoints, data_overrides, tmp_path, monkeypatch, capsys):
    from detect.evaluation import int8_report

    output = tmp_path / "ssd.int8.onnx"
    cases = [
        (["--format", "tensorrt"], "--int8: quantization is for --format onnx or openvino, not tensorrt"),
        (["--set", f"data.root={tmp_path / 'nowhere'}", "--set", "data.format=voc"],
         "--int8 calibrates on the training split of the checkpoint's data"),
    ]
    for extra, message in cases:
        code, _, stderr = run_cli(["export", str(checkpoints["ssd"]), "--int8", "--out", str(output), *extra],
                                  capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr

    def refuses(*args, **kwargs):
        raise ValueError("Conv node /trunk/conv1/Conv: unsupported weight type\nmore detail")

    monkeypatch.setattr("onnxruntime.quantization.quantize_static", refuses)
    message = "onnxruntime cannot quantize this model: Conv node /trunk/conv1/Conv"
    with pytest.raises(DetectError, match=message) as caught:
        int8_report.export_int8("onnx", checkpoints["ssd"], output, calibration=2, overrides=data_overrides)
    assert "\n" not in str(caught.value)
    assert not output.exists() and not report_path_of(output).exists()
