"""benchmarks.zoo: torchvision's detection models by name, with weights from a local state dict."""

from __future__ import annotations

import pytest
import torch

from benchmarks.torchvision_adapter import TorchvisionAdapter
from benchmarks.zoo import build_named_detector, torchvision_detection_names
from detect.errors import CheckpointError, ConfigError

NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_names_are_torchvisions_detection_builders():
    names = torchvision_detection_names()
    assert {"fasterrcnn_resnet50_fpn", "ssd300_vgg16", "retinanet_resnet50_fpn"} <= set(names)
    with pytest.raises(ConfigError, match="'yolo_v99' not found; choose from .*fasterrcnn_resnet50_fpn"):
        build_named_detector("yolo_v99", 2, MEAN, STD)


def test_torchvision_weights_from_a_local_state_dict(tmp_path):
    torch.manual_seed(0)
    trained = build_named_detector(NAME, 2, MEAN, STD)
    assert isinstance(trained, TorchvisionAdapter)
    path = tmp_path / "weights.pth"
    torch.save(trained.model.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_named_detector(NAME, 2, MEAN, STD, weights_path=path)
    for key, value in trained.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    # A detect checkpoint of the adapted model (keys under "model.") loads as well.
    torch.save({"model": trained.state_dict()}, tmp_path / "checkpoint.pt")
    from_checkpoint = build_named_detector(NAME, 2, MEAN, STD, weights_path=tmp_path / "checkpoint.pt")
    torch.testing.assert_close(from_checkpoint.state_dict(), trained.state_dict())
    # Weights for another class count do not fit: one line naming the file and the first misfit.
    with pytest.raises(CheckpointError, match=r"weights\.pth: weights do not fit FasterRCNN .*misshapen"):
        build_named_detector(NAME, 3, MEAN, STD, weights_path=path)
    with pytest.raises(CheckpointError, match=r"nowhere\.pth: state dict not found"):
        build_named_detector(NAME, 2, MEAN, STD, weights_path=tmp_path / "nowhere.pth")
