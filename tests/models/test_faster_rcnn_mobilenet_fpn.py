"""Faster R-CNN on MobileNetV3-Large FPN: the shipped configs load torchvision's
fasterrcnn_mobilenet_v3_large_fpn / _320_fpn state dicts and give its detections; the trunk's layout,
norm layers and freezing are torchvision's; state dicts round-trip; a training step runs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from benchmarks.torchvision_adapter import switch_off_transform
from detect.config import load_config
from detect.detections.padded import split_detections
from detect.errors import ConfigError
from detect.models.backbones import build_backbone
from detect.models.backbones.mobilenet_v3 import mobilenet_v3_stage_starts
from detect.models.backbones.weight_files import DETECTOR_WEIGHTS
from detect.models.build import build_model
from detect.models.weights import MAPPINGS
from tests.models.overfit_utils import shapes_batch
from tests.models.round_trip import assert_round_trips, coco_weight_file, settle_batchnorm

# Our config -> torchvision's builder of the same detector.
VARIANTS = {
    "voc_faster_rcnn_mobilenet": torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn,
    "voc_faster_rcnn_mobilenet320": torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn,
}
NUM_CLASSES = 20  # VOC's


def _torchvision_model(builder, seed: int = 0) -> torch.nn.Module:
    """torchvision's detector with seeded random weights, BatchNorm statistics of a random batch (so the
    activations stay in a normal range) and frozen BatchNorm as with COCO weights. The RPN's objectness
    is pushed down (bias -5.5) so that the 0.05 proposal score threshold drops many candidates."""
    torch.manual_seed(seed)
    model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
    settle_batchnorm(model, seed)
    with torch.no_grad():
        torch.nn.init.normal_(model.rpn.head.cls_logits.weight, std=0.02)
        torch.nn.init.constant_(model.rpn.head.cls_logits.bias, -5.5)
    return model.eval()


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """config name -> (torchvision's model, the file of its state dict)."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name, builder in VARIANTS.items():
        model = _torchvision_model(builder)
        path = folder / f"{builder.__name__}.pth"
        torch.save(model.state_dict(), path)
        files[name] = (model, path)
    return files


def _ours(name: str, pretrained: str) -> torch.nn.Module:
    config = load_config(name, [f"model.pretrained={pretrained}"])
    return build_model(config.model, config.input, NUM_CLASSES).eval()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_detections_equal_torchvisions_with_its_weights(torchvision_files, name, one_thread):
    theirs, path = torchvision_files[name]
    ours = _ours(name, str(path))
    switch_off_transform(theirs)  # same pixels: no resize, no normalization inside
    images = torch.randn(2, 3, 320, 416, generator=torch.Generator().manual_seed(1))
    images[1, :, :, 352:] = 0  # the second image is 320 x 352, padded
    sizes = torch.tensor([[320, 416], [320, 352]])
    with torch.no_grad():
        outputs = ours(images, sizes)
        mine = split_detections(ours.postprocess(outputs, sizes, torch.ones(2, 2)))
        expected = theirs([images[0], images[1, :, :, :352]])
    # The proposal score threshold bites: fewer proposals than post_nms_top_n survive.
    assert (outputs["roi_valid"].sum(dim=1) < ours.rpn.post_nms_top_n[1]).all()
    for found, reference in zip(mine, expected):
        assert len(found["boxes"]) == len(reference["boxes"]) > 10
        torch.testing.assert_close(found["boxes"], reference["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(found["scores"], reference["scores"], atol=1e-4, rtol=0)
        assert torch.equal(found["labels"], reference["labels"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shipped_configs_have_torchvisions_settings(torchvision_files, name):
    """What the detections test cannot see: the input size (both models were fed the same pixels)."""
    theirs, _ = torchvision_files[name]
    config = load_config(name)
    assert config.model.pretrained == "coco"
    assert (config.input.min_size, config.input.max_size) == (theirs.transform.min_size[0], theirs.transform.max_size)
    rpn = config.model.rpn
    assert (rpn.pre_nms_top_n_test, rpn.post_nms_top_n_test) == (theirs.rpn._pre_nms_top_n["testing"],
                                                                  theirs.rpn._post_nms_top_n["testing"])
    assert (rpn.pre_nms_top_n_train, rpn.post_nms_top_n_train) == (theirs.rpn._pre_nms_top_n["training"],
                                                                   theirs.rpn._post_nms_top_n["training"])
    assert rpn.score_threshold == theirs.rpn.score_thresh == 0.05
    assert config.model.anchors.sizes == [list(sizes) for sizes in theirs.rpn.anchor_generator.sizes]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_state_dict_round_trips_through_torchvisions_layout(torchvision_files, name):
    theirs, path = torchvision_files[name]
    mapping = MAPPINGS["faster_rcnn", load_config(name).model.backbone]
    ours = _ours(name, str(path))
    assert_round_trips(mapping, ours, theirs)


def test_trunk_parameter_names_and_maps_are_torchvisions():
    backbone = build_backbone("mobilenet_v3_large_fpn").eval()
    theirs = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    expected = {key.removeprefix("backbone."): value.shape
                for key, value in theirs.state_dict().items() if key.startswith("backbone.")}
    assert {k: v.shape for k, v in backbone.trunk.state_dict().items()} == expected
    assert backbone.stride == (32, 32, 64) and backbone.roi_levels == 1
    with torch.no_grad():
        maps = backbone.trunk(torch.randn(1, 3, 64, 128))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 2, 4), (1, 256, 2, 4), (1, 256, 1, 2)]


def test_norm_layers_and_freezing_are_torchvisions():
    """FrozenBatchNorm2d with eps 1e-5 with trained weights (not the classifier's 1e-3); trainable_layers 3
    (torchvision's default for this detector, and our configs') trains the top 3 of MobileNetV3's 6
    stages; from random weights, BatchNorm2d and every stage trains."""
    trained = build_backbone("mobilenet_v3_large_fpn", pretrained=DETECTOR_WEIGHTS, trainable_layers=3)
    norms = [m for m in trained.trunk.body.modules() if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) and m.eps == 1e-5 for m in norms)
    body = trained.trunk.body
    first_trainable = mobilenet_v3_stage_starts(torch.nn.Sequential(*body.values()))[-3]
    for index, block in enumerate(body.values()):
        assert all(p.requires_grad == (index >= first_trainable) for p in block.parameters()), index
    scratch = build_backbone("mobilenet_v3_large_fpn")
    norms = [m for m in scratch.trunk.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-5 for m in norms)
    assert all(p.requires_grad for p in scratch.parameters())


def test_imagenet_weights_from_a_local_file_go_into_the_trunk(tmp_path):
    torch.manual_seed(2)
    classifier = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(classifier.state_dict(), path)
    config = load_config("voc_faster_rcnn_mobilenet", [f"model.pretrained={path}"])
    model = build_model(config.model, config.input, NUM_CLASSES)
    body = model.backbone.trunk.body
    assert torch.equal(body["16"][0].weight, classifier.features[16][0].weight)
    assert torch.equal(body["16"][1].running_var, classifier.features[16][1].running_var)
    assert isinstance(body["16"][1], FrozenBatchNorm2d)


def test_training_step_gives_finite_losses_and_gradients(one_thread):
    config = load_config("voc_faster_rcnn_mobilenet320", ["model.pretrained=none"])
    torch.manual_seed(0)
    model = build_model(config.model, config.input, 3).train()
    images, targets = shapes_batch(2, 96)
    losses = model(images, torch.tensor([[96, 96], [96, 64]]), targets)
    assert set(losses) == {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.trunk.fpn.inner_blocks[1][0].weight.grad.abs().sum() > 0  # the 960-channel map
    assert model.roi_heads.box_head.fc6.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name, url", [
    ("voc_faster_rcnn_mobilenet",
     "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"),
    ("voc_faster_rcnn_mobilenet320",
     "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"),
])
def test_coco_offline_says_which_file_to_put_where(offline, name, url):
    config = load_config(name)
    with pytest.raises(ConfigError) as error:
        build_model(config.model, config.input, NUM_CLASSES)
    message = str(error.value)
    assert "\n" not in message and "model.pretrained=coco" in message and url in message
    cached = coco_weight_file(config.model.arch, config.model.backbone)
    assert str(cached) in message and str(cached).startswith(str(offline))


def test_anchor_sizes_per_level_on_a_single_map_are_refused():
    config = load_config("voc_faster_rcnn_resnet50", ["model.pretrained=none",
                                                      "model.anchors.sizes=[[32,64],[32,64]]"])
    with pytest.raises(ConfigError, match="model.anchors.sizes: .*one feature map.*flat list"):
        build_model(config.model, config.input, 2)
