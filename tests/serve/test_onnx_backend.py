"""--backend onnxruntime gives the torch backend's detections, through the same API."""

from __future__ import annotations

import numpy as np
import pytest

from detect.errors import DetectError
from detect.serve.model import load_served_model
from tests.serve.conftest import noise_image

pytest.importorskip("onnxruntime", reason="--backend onnxruntime needs the export extra (onnx, onnxruntime)")


@pytest.fixture(scope="module")
def onnx_model(checkpoint):
    return load_served_model(checkpoint, device="cpu", backend="onnxruntime")


def test_onnxruntime_matches_torch(onnx_model, served_model):
    images = [noise_image(50, 70, seed=1), noise_image(64, 40, seed=2)]
    for ours, reference in zip(onnx_model.predict(images), served_model.predict(images)):
        assert ours.image_size == reference.image_size
        assert len(ours) == len(reference) > 0
        np.testing.assert_array_equal(ours.labels, reference.labels)
        np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-4)
        np.testing.assert_allclose(ours.boxes, reference.boxes, atol=1e-2)
        assert ours.class_names == reference.class_names


def test_the_api_serves_the_onnx_backend(onnx_model):
    from fastapi.testclient import TestClient

    from detect.serve.app import create_app
    from tests.serve.conftest import encode

    with TestClient(create_app(onnx_model)) as client:
        assert client.get("/v1/model").json()["backend"] == "onnxruntime"
        answer = client.post("/v1/detect", files=[("files", ("a.png", encode(noise_image(48, 48, 3)), "image/png"))])
        assert answer.status_code == 200 and answer.json()["images"][0]["width"] == 48


def test_onnx_backend_on_a_gpu_device_is_refused(checkpoint):
    with pytest.raises(DetectError, match="--backend onnxruntime runs on the CPU"):
        load_served_model(checkpoint, device="cuda", backend="onnxruntime")


def test_an_exported_file_is_served_by_the_backend_its_suffix_names(checkpoint, served_model, tmp_path):
    """`detect serve model.onnx` (backend auto): onnxruntime, the checkpoint's detections; the training
    metadata an exported file does not keep is reported as null."""
    from detect.export import export_onnx

    path = tmp_path / "tiny.onnx"
    export_onnx(checkpoint, path, dynamic_batch=True)
    served = load_served_model(path, device="cpu")
    assert served.info["backend"] == "onnxruntime" and served.info["checkpoint"]["epoch"] is None
    images = [noise_image(50, 70, seed=1)]
    ours, reference = served.predict(images)[0], served_model.predict(images)[0]
    assert len(ours) == len(reference) > 0 and ours.class_names == reference.class_names
