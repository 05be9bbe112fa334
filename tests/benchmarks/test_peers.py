"""benchmarks.peers: torchvision's detectors built with our settings run, pool as ours does, and keep
our model contract behind the adapter."""

from __future__ import annotations

import pytest
import torch

from benchmarks.peers import build_peer, build_torchvision_faster_rcnn
from benchmarks.torchvision_adapter import TorchvisionAdapter
from detect.config import Config, InputConfig, model_section
from detect.detections.padded import split_detections
from tests.models.overfit_utils import shapes_batch
from tests.models.test_faster_rcnn import LOSS_KEYS, SMALL


@pytest.mark.parametrize("pool", ["roi_align", "roi_pool"])
def test_torchvision_peer_runs_a_forward_pass(pool):
    torch.manual_seed(0)
    input_cfg = InputConfig(min_size=64, max_size=96)
    peer = build_torchvision_faster_rcnn(model_section({**SMALL, "roi_pool": pool}), input_cfg, 2).train()
    images, targets = shapes_batch(2, 64)
    losses = peer(list(images), targets)
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} == set(losses)
    peer.eval()
    with torch.no_grad():
        detections = peer(list(images))
    assert len(detections) == 2 and len(detections[0]["boxes"]) <= 10


def test_torchvision_peer_roi_pool_is_torchvision_ops_roi_pool():
    """torchvision's FasterRCNN accepts only a MultiScaleRoIAlign: the RoIPool peer passes as one."""
    from torchvision.ops import roi_pool

    peer = build_torchvision_faster_rcnn(model_section({**SMALL, "roi_pool": "roi_pool"}),
                                         InputConfig(min_size=64, max_size=96), 2)
    pooler = peer.roi_heads.box_roi_pool
    features = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 30.0]]), torch.tensor([[8.0, 16.0, 90.0, 90.0], [1.0, 1.0, 5.0, 5.0]])]
    expected = roi_pool(features, boxes, pooler.pool_size, 1.0 / 16)
    torch.testing.assert_close(pooler({"0": features}, boxes, [(96, 96)] * 2), expected)


def test_torchvision_peer_keeps_our_model_contract():
    torch.manual_seed(0)
    peer = TorchvisionAdapter(build_torchvision_faster_rcnn(model_section(SMALL),
                                                         InputConfig(min_size=64, max_size=64), 2), 2)
    images, targets = shapes_batch(2, 64)
    sizes = torch.tensor([[64, 64], [48, 64]])
    peer.train()
    assert set(peer(images, sizes, targets)) == LOSS_KEYS
    peer.eval()
    with torch.no_grad():
        outputs = peer(images, sizes)
    detections = split_detections(peer.postprocess(outputs, sizes, torch.tensor([[0.5, 0.5], [1.0, 1.0]])))
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert not peer.training


@pytest.mark.parametrize("arch, backbone, expected", [
    ("faster_rcnn", "resnet18", "FasterRCNN"), ("ssd", "resnet18", "SSD"), ("ssdlite", "mobilenet_v3_large", "SSD"),
])
def test_build_peer_picks_torchvisions_twin(arch, backbone, expected):
    model = {"arch": arch, "backbone": backbone, "pretrained": "none"}
    if arch == "ssd":
        model["ssd"] = {"aspect_ratios": [[2.0], [2.0], [2.0], [2.0]]}
    config = Config.model_validate({"input": {"resize": "fixed", "size": 96, "size_divisible": 1}, "model": model})
    peer = build_peer(config, num_classes=3)
    assert type(peer).__name__ == expected
    if arch == "ssdlite":
        assert type(peer.head).__name__ == "SSDLiteHead"
    if arch == "ssd":  # torchvision's SSD on a copy of our trunk: one head output per map
        assert len(peer.head.classification_head.module_list) == 4



def test_ssd_peer_on_our_trunk_has_our_default_boxes():
    """The same default boxes as ours, `last_scale` included, when ours clamp sizes as torchvision does."""
    from detect.models.build import build_model

    config = Config.model_validate({
        "input": {"resize": "fixed", "size": 128, "size_divisible": 1},
        "model": {"arch": "ssd", "backbone": "resnet18", "pretrained": "none",
                  "ssd": {"aspect_ratios": [[2.0], [2.0, 3.0], [2.0], [2.0]], "steps": None, "last_scale": 0.95,
                          "clip_default_boxes": "size"}},
    })
    torch.manual_seed(0)
    ours = build_model(config.model, config.input, 3).eval()
    peer = build_peer(config, 3, ours).eval()
    images = torch.zeros(1, 3, 128, 128)
    with torch.no_grad():
        mine = ours(images, torch.tensor([[128, 128]]))["priors"]
        image_list, _ = peer.transform(list(images))
        theirs = peer.anchor_generator(image_list, list(peer.backbone(images).values()))[0]
    torch.testing.assert_close(theirs, mine, rtol=0, atol=1e-3)
