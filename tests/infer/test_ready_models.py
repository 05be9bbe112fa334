"""`<preset>_coco`: a model to run before any training, from torchvision's COCO weights in the torch hub
cache (here a stand-in file of the same architecture under the published name), with COCO's 80 class
names and category ids."""

from __future__ import annotations

import json
import urllib.error

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
    from detect.export.load import load_model_file

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


@pytest.fixture
def coco_ssdlite_file(tmp_path, monkeypatch):
    """torchvision's COCO file (a stand-in) copied to a folder of the user's, with an empty hub cache that
    cannot download: the offline machine `--weights FILE` is for."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    torch.manual_seed(1)
    theirs = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                        num_classes=91)
    url = torchvision.models.detection.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url
    path = tmp_path / "mine" / url.rsplit("/", 1)[-1]
    path.parent.mkdir()
    torch.save(theirs.state_dict(), path)
    return path, theirs


def test_weights_file_runs_a_ready_model_offline(coco_ssdlite_file, tmp_path, capsys):
    from detect.export.load import load_model_file

    path, theirs = coco_ssdlite_file
    loaded = load_model_file("ssdlite320_coco", weights=path)
    assert len(loaded.class_names) == 80 and loaded.category_ids[-1] == 90
    # Class rows carried by COCO's names: row "person" (COCO id 1) of theirs is row 1 of ours, and the last
    # class (toothbrush, id 90) keeps theirs too, the unused "N/A" rows between left out.
    theirs_cls = theirs.state_dict()["head.classification_head.module_list.0.1.weight"].view(6, 91, -1)
    ours_cls = loaded.model.state_dict()["head.cls_convs.0.1.weight"].view(6, 81, -1)
    assert torch.equal(ours_cls[:, 1], theirs_cls[:, 1]) and torch.equal(ours_cls[:, 80], theirs_cls[:, 90])
    image = write_image(tmp_path / "photo.jpg", 96, 128)
    code, _, err = run_detect(["infer", "ssdlite320_coco", image, "--weights", path, "--out", tmp_path / "out",
                               "-t", "0.0", "-q", "--device", "cpu"], capsys)
    assert code == 0, err
    from detect.serve.model import load_served_model

    served = load_served_model("ssdlite320_coco", device="cpu", weights=path)
    assert served.info["checkpoint"]["file"] == path.name and len(served.info["classes"]) == 80


def test_weights_file_is_checked_in_one_line(coco_ssdlite_file, tmp_path, capsys, monkeypatch):
    path, _ = coco_ssdlite_file
    renamed = path.with_name("coco.pth")
    renamed.write_bytes(path.read_bytes())
    image = write_image(tmp_path / "photo.jpg", 96, 128)
    for weights, reason in [(renamed, "runs torchvision's COCO file ssdlite320_mobilenet_v3_large_coco-"),
                            (tmp_path / "absent.pth", "no such file"),
                            ]:
        code, _, err = run_detect(["infer", "ssdlite320_coco", image, "--weights", weights, "--out",
                                   tmp_path / "out"], capsys)
        assert code == 2 and reason in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "best.pt").write_bytes(b"a model file of its own")
    code, _, err = run_detect(["infer", tmp_path / "best.pt", image, "--weights", path], capsys)
    assert code == 2 and "leave --weights out" in err
    # Without the file, with no cache and no network: one line naming the file to put in place.
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    code, _, err = run_detect(["infer", "ssdlite320_coco", image, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "not cached and could not be downloaded" in err
