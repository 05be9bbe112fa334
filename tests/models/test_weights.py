"""Detector weights: torchvision's fasterrcnn_resnet50_fpn state dicts load into ours and give its
detections; round trips; predictor rows carried by class name; the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchmarks.torchvision_adapter import switch_off_transform
from detect.config import FasterRCNNModelConfig, InputConfig, model_section
from detect.detections.padded import split_detections
from detect.errors import CheckpointError, ConfigError
from detect.models.backbones.freezing import frozen_batchnorm
from detect.models.build import build_model
from detect.models.weights import MAPPINGS, load_detector_weights, read_detector_weights
from tests.models.round_trip import assert_round_trips, coco_weight_file, settle_batchnorm

FPN = {
    "backbone": "resnet50_fpn",
    "roi_pool": "roi_align",
    "anchors": {"sizes": [32, 64, 128, 256, 512]},
    "rpn": {"pre_nms_top_n_test": 1000, "post_nms_top_n_test": 1000, "min_box_size": 0.001},
    "roi_heads": {"nms_thresh": 0.5},
}
COCO_NAMES = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]


def _fpn_config(**overrides) -> FasterRCNNModelConfig:
    return model_section({**FPN, **overrides})


def _torchvision_fpn(num_classes: int, seed: int = 0) -> torch.nn.Module:
    """torchvision's model with seeded random weights and BatchNorm statistics of a random batch (so the
    activations stay in a normal range), then FrozenBatchNorm2d as when it loads COCO weights."""
    torch.manual_seed(seed)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1)
    settle_batchnorm(model, seed)
    return model.eval()


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    model = _torchvision_fpn(num_classes=3)
    path = tmp_path_factory.mktemp("weights") / "fasterrcnn_resnet50_fpn.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_detections_equal_torchvisions_with_its_weights(torchvision_file):
    theirs, path = torchvision_file
    ours = build_model(_fpn_config(pretrained=str(path)), InputConfig(), 3).eval()
    switch_off_transform(theirs)  # same pixels: no resize, no normalization inside
    images = torch.randn(2, 3, 128, 192, generator=torch.Generator().manual_seed(1))
    images[1, :, :, 160:] = 0  # the second image is 128 x 160, padded
    sizes = torch.tensor([[128, 192], [128, 160]])
    with torch.no_grad():
        mine = split_detections(ours.postprocess(ours(images, sizes), sizes, torch.ones(2, 2)))
        expected = theirs([images[0], images[1, :, :, :160]])
    for found, reference in zip(mine, expected):
        assert len(found["boxes"]) == len(reference["boxes"]) > 10
        torch.testing.assert_close(found["boxes"], reference["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(found["scores"], reference["scores"], atol=1e-4, rtol=0)
        assert torch.equal(found["labels"], reference["labels"])


def test_state_dict_round_trips_through_torchvisions_layout(torchvision_file):
    theirs, path = torchvision_file
    mapping = MAPPINGS["faster_rcnn", "resnet50_fpn"]
    ours = build_model(_fpn_config(pretrained=str(path)), InputConfig(), 3)
    assert_round_trips(mapping, ours, theirs)


def test_torchvision_loads_our_exported_weights(torchvision_file):
    _, path = torchvision_file
    ours = build_model(_fpn_config(pretrained=str(path)), InputConfig(), 3)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4)
    frozen_batchnorm(model.backbone.body)
    model.load_state_dict(MAPPINGS["faster_rcnn", "resnet50_fpn"].to_torchvision(ours.state_dict()))


def test_old_torchvision_rpn_key_layout_loads():
    """torchvision's COCO_V1 file predates the `conv.0.0` layout of the RPN head."""
    state = {"rpn.head.conv.weight": torch.ones(1), "rpn.head.conv.0.0.bias": torch.zeros(1)}
    assert set(MAPPINGS["faster_rcnn", "resnet50_fpn"].to_ours(state)) == {"rpn.head.conv.weight", "rpn.head.conv.bias"}


def test_predictor_rows_carried_over_by_class_name(torchvision_file, tmp_path):
    theirs, _ = torchvision_file
    # A COCO-sized predictor: 91 rows, COCO's names; our classes: two COCO classes in VOC spelling and one other.
    state = theirs.state_dict()
    torch.manual_seed(1)
    state["roi_heads.box_predictor.cls_score.weight"] = torch.randn(91, 1024)
    state["roi_heads.box_predictor.cls_score.bias"] = torch.randn(91)
    state["roi_heads.box_predictor.bbox_pred.weight"] = torch.randn(91 * 4, 1024)
    state["roi_heads.box_predictor.bbox_pred.bias"] = torch.randn(91 * 4)
    path = tmp_path / "coco_like.pth"
    torch.save(state, path)
    weights = read_detector_weights(str(path), "faster_rcnn", "resnet50_fpn")
    weights.class_names = list(COCO_NAMES[1:])
    torch.manual_seed(0)
    model = build_model(_fpn_config(), InputConfig(), 3)
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("roi_heads.")}
    load_detector_weights(model, weights, ["aeroplane", "raccoon", "person"])
    cls_w = model.roi_heads.cls_score.weight
    airplane, person = COCO_NAMES.index("airplane"), COCO_NAMES.index("person")
    assert torch.equal(cls_w[0], state["roi_heads.box_predictor.cls_score.weight"][0])  # background
    assert torch.equal(cls_w[1], state["roi_heads.box_predictor.cls_score.weight"][airplane])
    assert torch.equal(cls_w[2], fresh["roi_heads.cls_score.weight"][2])  # not a COCO class: fresh
    assert torch.equal(cls_w[3], state["roi_heads.box_predictor.cls_score.weight"][person])
    box_w = model.roi_heads.bbox_pred.weight
    assert torch.equal(box_w[0:4], state["roi_heads.box_predictor.bbox_pred.weight"][airplane * 4:airplane * 4 + 4])
    assert torch.equal(box_w[4:8], fresh["roi_heads.bbox_pred.weight"][4:8])
    # Everything else is the file's.
    assert torch.equal(model.roi_heads.box_head.fc6.weight, state["roi_heads.box_head.fc6.weight"])


def test_detect_checkpoint_as_pretrained_keeps_rows_by_name(torchvision_file, tmp_path):
    _, path = torchvision_file
    source = build_model(_fpn_config(pretrained=str(path)), InputConfig(), 3, ["cat", "dog", "bird"])
    checkpoint = tmp_path / "best.pt"
    import numpy as np

    torch.save({"model": source.state_dict(), "config": {}, "class_names": ["cat", "dog", "bird"],
                "rng": {"numpy": np.random.get_state()}}, checkpoint)
    model = build_model(_fpn_config(pretrained=str(checkpoint)), InputConfig(), 2, ["bird", "cat"])
    assert torch.equal(model.roi_heads.cls_score.weight[1], source.roi_heads.cls_score.weight[3])
    assert torch.equal(model.roi_heads.cls_score.weight[2], source.roi_heads.cls_score.weight[1])
    assert torch.equal(model.rpn.head.conv.weight, source.rpn.head.conv.weight)


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path):
    path = tmp_path / "wrong.pth"
    state = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=3).state_dict()
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        build_model(_fpn_config(pretrained=str(path)), InputConfig(), 2)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "missing" in message


def test_trunk_settings_are_not_detector_weights(tmp_path):
    assert read_detector_weights("none", "faster_rcnn", "resnet50_fpn") is None
    assert read_detector_weights("imagenet", "faster_rcnn", "resnet50_fpn") is None
    path = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)  # a classification state dict: the trunk's
    assert read_detector_weights(str(path), "faster_rcnn", "resnet50_fpn") is None


def test_unreadable_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="broken.pth: not a readable weights file"):
        build_model(_fpn_config(pretrained=str(path)), InputConfig(), 2)


def test_coco_offline_says_which_file_to_put_where(offline):
    with pytest.raises(ConfigError) as error:
        build_model(_fpn_config(pretrained="coco"), InputConfig(), 2)
    message = str(error.value)
    assert "\n" not in message and "model.pretrained=coco" in message
    assert "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in message
    assert str(coco_weight_file("faster_rcnn", "resnet50_fpn")) in message
    assert str(coco_weight_file("faster_rcnn", "resnet50_fpn")).startswith(str(offline))


def test_coco_cached_file_is_used_without_network(torchvision_file, tmp_path, monkeypatch):
    theirs, _ = torchvision_file
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    cached = coco_weight_file("faster_rcnn", "resnet50_fpn")
    cached.parent.mkdir(parents=True)
    torch.save(theirs.state_dict(), cached)  # 4 rows stand for COCO's 91: no name lines up by position
    model = build_model(_fpn_config(pretrained="coco"), InputConfig(), 2, ["person", "car"])
    assert torch.equal(model.rpn.head.objectness.weight, theirs.rpn.head.cls_logits.weight)
    # Rows carried by COCO's names: "person" is COCO's label 1, "car" label 3.
    assert torch.equal(model.roi_heads.cls_score.weight[1], theirs.roi_heads.box_predictor.cls_score.weight[1])
    assert torch.equal(model.roi_heads.cls_score.weight[2], theirs.roi_heads.box_predictor.cls_score.weight[3])


def test_coco_for_a_backbone_without_a_torchvision_twin():
    with pytest.raises(ConfigError, match="no COCO-trained detector for backbone 'resnet101_fpn'"):
        build_model(_fpn_config(backbone="resnet101_fpn", pretrained="coco"), InputConfig(), 2)


def test_first_training_step_starts_from_the_loaded_weights(torchvision_file):
    """Fine-tuning from a torchvision file: the first step's losses are the loaded model's, not a fresh one's."""
    from tests.models.overfit_utils import shapes_batch

    _, path = torchvision_file
    images, targets = shapes_batch(2, 64)
    sizes = torch.tensor([[64, 64], [64, 64]])
    losses = {}
    for name, pretrained in (("loaded", str(path)), ("fresh", "none")):
        torch.manual_seed(0)
        model = build_model(_fpn_config(pretrained=pretrained), InputConfig(), 3).train()
        torch.manual_seed(1)  # the same anchor and RoI sampling for both
        step = model(images, sizes, targets)
        sum(step.values()).backward()
        losses[name] = {k: v.item() for k, v in step.items()}
    assert all(torch.isfinite(torch.tensor(list(v.values()))).all() for v in losses.values())
    assert losses["loaded"]["loss_classifier"] != pytest.approx(losses["fresh"]["loss_classifier"], rel=1e-3)
    assert losses["loaded"]["loss_rpn_objectness"] != pytest.approx(losses["fresh"]["loss_rpn_objectness"], rel=1e-3)


def _eps_sensitive(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose FrozenBatchNorm variances are near 1e-5, weights scaled to match: the same function
    under eps 0, another one under eps 1e-5."""
    import copy

    from torchvision.ops.misc import FrozenBatchNorm2d

    model = copy.deepcopy(model)
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, FrozenBatchNorm2d):
                norm.running_var.mul_(1e-4)
                norm.weight.mul_(1e-2)
    return model


def test_coco_weights_set_frozen_batchnorm_eps_to_zero_as_torchvision_does(torchvision_file, offline):
    """torchvision's fasterrcnn_resnet50_fpn sets every FrozenBatchNorm eps to 0 after loading its COCO_V1
    file (`overwrite_eps(model, 0.0)`). The stand-in file's norms have variances near 1e-5 (and weights
    scaled to match), so that eps 1e-5 against 0 changes the detections."""
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.ops.misc import FrozenBatchNorm2d

    theirs = _eps_sensitive(torchvision_file[0])
    overwrite_eps(theirs, 0.0)
    cached = coco_weight_file("faster_rcnn", "resnet50_fpn")
    cached.parent.mkdir(parents=True)
    torch.save(theirs.state_dict(), cached)
    names = list(COCO_NAMES[1:4])  # the file's 3 rows line up with COCO's first 3 classes by name
    ours = build_model(_fpn_config(pretrained="coco"), InputConfig(), 3, names).eval()
    norms = [m for m in ours.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) > 50 and all(norm.eps == 0.0 for norm in norms)
    # The same file under its published name is read as COCO's (an offline copy of the cache's); under
    # another name it is any state dict, its norms left as built.
    published = build_model(_fpn_config(pretrained=str(cached)), InputConfig(), 3, names).eval()
    assert all(m.eps == 0.0 for m in published.modules() if isinstance(m, FrozenBatchNorm2d))
    renamed = cached.with_name("my_weights.pth")
    renamed.write_bytes(cached.read_bytes())
    as_file = build_model(_fpn_config(pretrained=str(renamed)), InputConfig(), 3, names).eval()
    assert all(m.eps == 1e-5 for m in as_file.modules() if isinstance(m, FrozenBatchNorm2d))  # not COCO's file

    switch_off_transform(theirs)
    images = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    sizes = torch.tensor([[128, 160], [128, 160]])
    with torch.no_grad():
        mine = split_detections(ours.postprocess(ours(images, sizes), sizes, torch.ones(2, 2)))
        other = split_detections(as_file.postprocess(as_file(images, sizes), sizes, torch.ones(2, 2)))
        expected = theirs(list(images))
    for found, reference in zip(mine, expected):
        assert len(found["boxes"]) == len(reference["boxes"]) > 10
        torch.testing.assert_close(found["boxes"], reference["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(found["scores"], reference["scores"], atol=1e-4, rtol=0)
    assert not all(len(a["scores"]) == len(b["scores"]) and torch.allclose(a["scores"], b["scores"], atol=1e-4)
                   for a, b in zip(other, expected))


def test_checkpoint_of_a_model_started_from_coco_keeps_eps_zero(torchvision_file, offline):
    """Rebuilt from its checkpoint (norms are BatchNorm2d then, in eval mode), a model fine-tuned from the
    COCO weights keeps their eps 0 and predicts what it predicted after training (with variances that
    make eps matter)."""
    from detect.checkpoints import build_model_from_checkpoint
    from detect.config import config_to_dict, load_config
    from detect.engine.checkpoint import save_checkpoint

    cached = coco_weight_file("faster_rcnn", "resnet50_fpn")
    cached.parent.mkdir(parents=True)
    torch.save(_eps_sensitive(torchvision_file[0]).state_dict(), cached)
    config = load_config("voc_faster_rcnn_fpn", ["data.classes=[person,bicycle,car]"])
    trained = build_model(config.model, config.input, 3, list(COCO_NAMES[1:4])).eval()
    path = save_checkpoint({"model": trained.state_dict(), "config": config_to_dict(config),
                            "class_names": list(COCO_NAMES[1:4])}, offline / "best.pt")
    rebuilt, _, _ = build_model_from_checkpoint(path)
    norms = [m for m in rebuilt.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) > 50 and all(norm.eps == 0.0 for norm in norms)
    images, sizes = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(1)), torch.tensor([[128, 160]])
    with torch.no_grad():
        expected, = split_detections(trained.postprocess(trained(images, sizes), sizes, torch.ones(1, 2)))
        found, = split_detections(rebuilt.postprocess(rebuilt(images, sizes), sizes, torch.ones(1, 2)))
    assert len(found["boxes"]) == len(expected["boxes"]) > 10  # BatchNorm2d's arithmetic: float rounding only
    torch.testing.assert_close(found["boxes"], expected["boxes"], atol=1e-2, rtol=0)
    torch.testing.assert_close(found["scores"], expected["scores"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("config_name, overrides, warned", [
    ("voc_ssd300", ["model.pretrained=coco"], True),  # ImageNet scaling: the COCO weights saw 0-255 pixels
    ("voc_ssd300_coco", [], False),
    ("voc_ssdlite320", ["model.pretrained=coco"], False),
    ("voc_ssdlite320", ["model.pretrained=coco", "input.mean=[0.485,0.456,0.406]"], True),
    ("voc_faster_rcnn_fpn", [], False),
    ("voc_faster_rcnn_mobilenet320", [], False),
    ("voc_ssd300", [], False),  # ImageNet trunk: its own scaling is right
])
def test_coco_weights_with_another_input_scaling_are_warned_of(config_name, overrides, warned):
    from detect.config import load_config
    from detect.models.weights import coco_input_mismatch

    config = load_config(config_name, overrides)
    warning = coco_input_mismatch(config.model.pretrained, config.model.arch, config.model.backbone,
                                  config.input.mean, config.input.std)
    assert (warning is not None) == warned
    if warned:
        assert "input.mean" in warning and "\n" not in warning
        mapping = MAPPINGS[(config.model.arch, config.model.backbone)]
        assert mapping.coco_config in warning
        fitting = load_config(mapping.coco_config, ["model.pretrained=coco"])
        assert coco_input_mismatch("coco", fitting.model.arch, fitting.model.backbone, fitting.input.mean,
                                   fitting.input.std) is None
