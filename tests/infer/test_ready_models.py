"""`<preset>_coco`: a model to run before any training, from torchvision's COCO weights in the torch hub
cache (here a stand-in file of the same architecture under the published name), with COCO's 80 class
names and category ids."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from detect.infer import Detector
from detect.models.backbones.weight_files import hub_weight_file
from tests.conftest import run_detect
from tests.data.conftest import write_image


@pytest.fixture
def coco_ssdlite_in_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)  # read from the cache, never fetched
    torch.manual_seed(0)
    theirs = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                        num_classes=91)
    weights = torchvision.models.detection.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    cached = hub_weight_file(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(theirs.state_dict(), cached)
    return theirs


def test_a_ready_model_has_cocos_classes_and_the_cached_weights(coco_ssdlite_in_cache):
    from detect.backends import load_model_file

    detector = Detector.from_file("ssdlite320_coco", device="cpu")
    assert len(detector.class_names) == 80 and detector.class_names[:3] == ["person", "bicycle", "car"]
    assert detector.category_ids[:3] == [1, 2, 3] and detector.category_ids[-1] == 90
    ours = load_model_file("ssdlite320_coco").model.state_dict()  # before the Detector folds BatchNorm
    theirs = coco_ssdlite_in_cache.state_dict()
    first = theirs[[key for key in theirs if key.endswith("weight")][0]]  # the trunk's first convolution
    assert any(torch.equal(value, first) for value in ours.values() if value.shape == first.shape)


def test_detect_infer_runs_a_ready_model(coco_ssdlite_in_cache, tmp_path, capsys):
    image = write_image(tmp_path / "photo.jpg", 96, 128)
    out = tmp_path / "out"
    code, stdout, err = run_detect(["infer", "ssdlite320_coco", image, "--out", out, "--json", "-t", "0.0", "-q",
                                    "--device", "cpu"], capsys)
    assert code == 0, err
    found = json.loads((out / "detections_coco.json").read_text())
    assert found and {record["category_id"] for record in found} <= set(range(1, 91))
    code, _, err = run_detect(["infer", "ssdlite320_coco", image, "--out", out, "--backend", "onnxruntime"], capsys)
    assert code == 2 and "a ready model runs on --backend torch" in err


def test_serve_loads_a_ready_model(coco_ssdlite_in_cache):
    from detect.serve.model import load_served_model

    served = load_served_model("ssdlite320_coco", device="cpu")
    assert served.info["backend"] == "torch" and len(served.info["classes"]) == 80
    assert served.info["checkpoint"]["file"].startswith("ssdlite320_mobilenet_v3_large_coco")
