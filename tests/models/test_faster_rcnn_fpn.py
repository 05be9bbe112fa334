"""Faster R-CNN with a feature pyramid (resnet18_fpn here; resnet50_fpn in test_weights.py): the model contract,
batching, settings it refuses."""

from __future__ import annotations

import pytest
import torch

from detect.config import InputConfig, load_config, model_section
from detect.detections.padded import split_detections
from detect.errors import ConfigError
from detect.models.build import build_model
from detect.models.nms import nms_per_image
from tests.models.overfit_utils import shapes_batch

SMALL_FPN = {
    "backbone": "resnet18_fpn",
    "roi_pool": "roi_align",
    "anchors": {"sizes": [16, 32, 64, 128, 256]},
    "rpn": {"batch_size_per_image": 64, "pre_nms_top_n_train": 200, "post_nms_top_n_train": 100,
            "pre_nms_top_n_test": 100, "post_nms_top_n_test": 50, "min_box_size": 0.001},
    "roi_heads": {"batch_size_per_image": 32, "detections_per_img": 10},
}
LOSS_KEYS = {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(model_section(SMALL_FPN), InputConfig(), 2)


def test_losses_with_an_image_without_ground_truth_and_backward(model):
    model.train()
    images, targets = shapes_batch(2, 64)
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(images, torch.tensor([[64, 64], [48, 64]]), targets)
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    # Every level feeds the shared RPN head and the RoI pooling: the pyramid's convs all get gradients.
    fpn = model.backbone.trunk.fpn
    for block in [*fpn.inner_blocks, *fpn.layer_blocks]:
        assert block[0].weight.grad is not None and block[0].weight.grad.abs().sum() > 0
    assert model.roi_heads.box_head.fc6.weight.grad.abs().sum() > 0


def test_inference_contract_and_per_level_proposals(model):
    model.eval()
    images = torch.randn(2, 3, 64, 96)
    image_sizes = torch.tensor([[64, 96], [48, 80]])
    with torch.no_grad():
        outputs = model(images, image_sizes)
        proposals, valid, _ = model.rpn(model.backbone(images), image_sizes)
    # pre_nms_top_n is per level: 100 + 96 + 24 + 6 + 3 candidates, of which at most 50 are kept.
    assert proposals.shape == (2, 50, 4) and valid.any(dim=1).all()
    assert (proposals[1, valid[1], 2] <= 80).all() and (proposals[1, valid[1], 3] <= 48).all()
    assert outputs["class_logits"].shape == (2, 50, 3) and outputs["box_deltas"].shape == (2, 50, 2, 4)
    detections = split_detections(model.postprocess(outputs, image_sizes, torch.ones(2, 2)))
    assert len(detections) == 2 and all(len(d["boxes"]) <= 10 for d in detections)


def test_batched_inference_equals_one_image_at_a_time(model):
    model.eval()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    sizes = torch.tensor([[64, 96], [64, 96]])
    with torch.no_grad():
        both = split_detections(model.postprocess(model(images, sizes), sizes, torch.ones(2, 2)))
        for index in range(2):
            outputs = model(images[index:index + 1], sizes[:1])
            alone = split_detections(model.postprocess(outputs, sizes[:1], torch.ones(1, 2)))[0]
            torch.testing.assert_close(both[index]["boxes"], alone["boxes"], atol=1e-3, rtol=0)
            torch.testing.assert_close(both[index]["scores"], alone["scores"], atol=1e-5, rtol=0)


def test_nms_within_groups_only():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    assert nms_per_image(boxes, scores, valid, 0.5, 10.0).tolist() == [[True, False, False]]
    groups = torch.tensor([0, 1, 0])
    assert nms_per_image(boxes, scores, valid, 0.5, 10.0, groups=groups).tolist() == [[True, True, False]]


def test_pyramid_settings_a_user_can_get_wrong():
    with pytest.raises(ConfigError, match="model.anchors.sizes: .*5 pyramid levels.*got 3"):
        build_model(model_section({**SMALL_FPN, "anchors": {"sizes": [32, 64, 128]}}), InputConfig(), 2)
    with pytest.raises(ConfigError, match="model.roi_pool: .*roi_align"):
        build_model(model_section({**SMALL_FPN, "roi_pool": "roi_pool"}), InputConfig(), 2)


@pytest.mark.parametrize("name", ["voc_faster_rcnn_fpn", "coco_faster_rcnn_fpn"])
def test_shipped_fpn_configs_have_torchvisions_settings(name):
    config = load_config(name, ["model.pretrained=none"])
    assert config.model.backbone == "resnet50_fpn"
    model = build_model(config.model, config.input, 20)
    assert model.rpn.anchor_generator.sizes == [32, 64, 128, 256, 512] and model.rpn.anchor_generator.num_anchors == 3
    assert (model.rpn.pre_nms_top_n, model.rpn.post_nms_top_n) == ((2000, 1000), (2000, 1000))
    assert model.roi_heads.stride == (4, 8, 16, 32) and model.roi_heads.output_size == 7
    assert (model.roi_heads.nms_thresh, model.roi_heads.score_threshold) == (0.5, 0.05)
    assert load_config("voc_faster_rcnn_fpn").model.pretrained == "coco"
