"""`detect export --format openvino` and `--backend openvino`: the IR (or the .onnx file itself) gives
the PyTorch backend's detections for both heads, feature pyramids included, at fp32 tolerances; the
IR carries everything a deployment needs; bad files get one line."""

from __future__ import annotations

import json

import cv2
import pytest

from detect.errors import DetectError
from detect.export import export_model
from detect.export.openvino import save_ir
from detect.infer import Detector
from tests.infer.conftest import CLASS_NAMES, noise_image, rigged
from tests.infer.test_export import FPN_MODELS, fpn_model
from tests.infer.test_infer import run_cli
from tests.infer.test_onnx_backend import IMAGES, assert_same_detections

pytest.importorskip("openvino", reason="the OpenVINO backend needs the openvino extra: pip install -e '.[openvino]'")
pytest.importorskip("onnx", reason="OpenVINO export goes through ONNX: pip install -e '.[export]'")
from detect.backends.openvino_backend import OpenVinoModel  # noqa: E402


def exported_ir(model, config, folder, name, **options):
    onnx_path = folder / f"{name}.onnx"
    export_model(model, config, CLASS_NAMES, onnx_path, **options)
    ir_path = folder / f"{name}.xml"
    save_ir(onnx_path, ir_path)
    return onnx_path, ir_path


@pytest.mark.parametrize("arch", ["ssd", "faster_rcnn"])
def test_openvino_matches_pytorch(tiny_models, tmp_path, arch):
    model, config = tiny_models[arch]
    model = rigged(model)
    onnx_path, ir_path = exported_ir(model, config, tmp_path, arch, dynamic_batch=True)
    expected = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)(IMAGES)
    assert len(expected[1]) == 0 and sum(len(e) for e in expected) > 0  # the dark image finds nothing
    for path in (ir_path, onnx_path):  # the IR, and OpenVINO reading the .onnx file itself
        found = Detector.from_file(path, backend="openvino", score_threshold=0.0, batch_size=3)(IMAGES)
        assert_same_detections(found, expected)


@pytest.mark.parametrize("backbone", sorted(FPN_MODELS))
def test_feature_pyramid_faster_rcnn_matches_pytorch(tmp_path, backbone):
    model, config = fpn_model(backbone)
    _, ir_path = exported_ir(model, config, tmp_path, backbone, dynamic_batch=True)
    images = [noise_image(60, 80, seed=1), noise_image(90, 50, seed=2)]
    expected = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)(images)
    assert min(len(e) for e in expected) > 0
    found = Detector.from_file(ir_path, score_threshold=0.0)(images)  # auto: .xml is OpenVINO's
    assert_same_detections(found, expected)


def test_fixed_batch_ir_takes_any_number_of_images(tiny_models, tmp_path):
    model, config = tiny_models["ssd"]
    model = rigged(model)
    _, ir_path = exported_ir(model, config, tmp_path, "ssd_b2", batch_size=2)
    assert OpenVinoModel(ir_path).batch_size == 2
    expected = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)(IMAGES[:3])
    found = Detector.from_file(ir_path, score_threshold=0.0, batch_size=3)(IMAGES[:3])  # chunks of 2: 2 + 1
    assert_same_detections(found, expected)


def test_ir_carries_the_class_names_and_config(tiny_models, tmp_path):
    model, config = tiny_models["ssd"]
    _, ir_path = exported_ir(model, config, tmp_path, "ssd")
    metadata = OpenVinoModel(ir_path).metadata
    assert json.loads(metadata["class_names"]) == CLASS_NAMES
    assert json.loads(metadata["config"])["model"]["arch"] == "ssd"
    (tmp_path / "ssd.onnx").unlink()  # nothing but the two IR files is needed
    detector = Detector.from_file(ir_path)
    assert detector.class_names == CLASS_NAMES and detector.config.model.arch == "ssd"


def test_cli_export_and_infer_with_openvino(checkpoints, tmp_path, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), noise_image(40, 50, seed=0))
    ir_path = tmp_path / "ssd.xml"
    code, stdout, _ = run_cli(["export", str(checkpoints["ssd"]), "--format", "openvino", "--out", str(ir_path),
                               "--dynamic-batch"], capsys)
    assert code == 0 and "OpenVINO IR" in stdout
    assert ir_path.is_file() and ir_path.with_suffix(".bin").is_file()
    outputs = {}
    for backend, model_path in (("torch", checkpoints["ssd"]), ("openvino", ir_path)):
        out = tmp_path / backend
        code, stdout, _ = run_cli(["infer", str(model_path), str(image), "--out", str(out), "--json",
                                   "--score-threshold", "0.3", "--device", "cpu", "-q"], capsys)  # backend: auto
        assert code == 0, stdout
        outputs[backend] = json.loads((out / "detections.json").read_text())["images"][0]["detections"]
    assert outputs["torch"] and len(outputs["torch"]) == len(outputs["openvino"])
    for ours, reference in zip(outputs["openvino"], outputs["torch"]):
        assert ours["class_name"] == reference["class_name"]
        assert ours["score"] == pytest.approx(reference["score"], abs=1e-5)


def test_openvino_errors_are_one_line(checkpoints, tmp_path):
    not_ir = tmp_path / "bad.xml"
    not_ir.write_text("<net>")
    with pytest.raises(DetectError, match="bad.xml: its weights file bad.bin is missing"):
        Detector.from_file(not_ir)
    not_ir.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(DetectError, match="bad.xml: not a readable OpenVINO or ONNX model") as caught:
        Detector.from_file(not_ir)
    assert "\n" not in str(caught.value) and "Exception from" not in str(caught.value)
    with pytest.raises(DetectError, match="--backend openvino runs on the CPU"):
        Detector.from_file(checkpoints["ssd"], backend="openvino", device="cuda")
    with pytest.raises(DetectError, match="none.xml: model file not found"):
        Detector.from_file(tmp_path / "none.xml")


def test_openvino_load_errors_say_why(checkpoints, tmp_path, capsys):
    """OpenVINO's first lines name its source files; the message quotes the line with the reason."""
    from tests.conftest import run_detect
    from tests.data.conftest import voc_xml

    model = tmp_path / "m.xml"
    code, _, err = run_detect(["export", checkpoints["ssd"], "--format", "openvino", "--out", model], capsys)
    assert code == 0, err
    weights = model.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(DetectError) as caught:
        Detector.from_file(model)
    assert str(caught.value) == f"{model}: not a readable OpenVINO or ONNX model: Incorrect weights in bin file!"
    annotation = tmp_path / "a.xml"
    annotation.write_text(voc_xml([("cat", 1, 1, 5, 5)]))
    annotation.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(DetectError) as caught:
        Detector.from_file(annotation)
    assert "Unable to read the model" in str(caught.value), caught.value
