"""Backbone factory: shapes, offline weight loading, freezing, and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from detect.errors import ConfigError
from detect.models.backbones import (
    BACKBONES,
    backbone_names,
    build_backbone,
    build_ssd_trunk,
    mobilenet_v3,
    resnet,
    weight_files,
)
from detect.models.backbones.weight_files import classifier_model

EXPECTED = {
    # name: (out_channels, head_out_channels, roi_output_size)
    "vgg16": (512, 4096, 7),
    "vgg16_bn": (512, 4096, 7),
    "resnet18": (256, 512, 14),
    "resnet34": (256, 512, 14),
    "resnet50": (1024, 2048, 14),
    "resnet101": (1024, 2048, 14),
    "mobilenet_v3_large": (112, 960, 14),
    "mobilenet_v3_small": (48, 576, 14),
    "tiny_resnet": (128, 256, 7),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_trunk_and_head_shapes(name):
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    out_channels, head_out_channels, roi_size = EXPECTED[name]
    assert (backbone.out_channels, backbone.head_out_channels) == (out_channels, head_out_channels)
    assert backbone.stride == 16 and backbone.roi_output_size == roi_size
    with torch.no_grad():
        features = backbone.trunk(torch.randn(1, 3, 64, 96))
        assert features.shape == (1, out_channels, 4, 6)
        pooled = torch.randn(2, out_channels, roi_size, roi_size)
        assert backbone.head(pooled).shape == (2, head_out_channels)


PYRAMIDS = {"resnet18_fpn", "resnet34_fpn", "resnet50_fpn", "resnet101_fpn", "mobilenet_v3_large_fpn",
            "mobilenet_v3_large_320_fpn"}


def test_registry_is_a_plain_dict_of_builders():
    assert isinstance(BACKBONES, dict) and set(EXPECTED) | PYRAMIDS <= set(BACKBONES)
    with pytest.raises(ConfigError, match="model.backbone.*resnet18"):
        build_backbone("resnet19")


def _norms(backbone):
    return [m for m in backbone.modules() if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]


def test_resnet_uses_frozen_batchnorm_with_loaded_weights(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    norms = _norms(build_backbone("resnet18", pretrained=str(path)))
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)


def test_resnet_from_scratch_trains_its_batchnorm():
    norms = _norms(build_backbone("resnet18"))
    assert norms and all(type(m) is torch.nn.BatchNorm2d for m in norms)
    assert all(m.weight.requires_grad for m in norms)


def test_offline_loading_from_a_saved_state_dict(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    # Non-trivial statistics, so the check covers BatchNorm buffers too.
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    backbone = build_backbone("resnet18", pretrained=str(path))
    assert torch.equal(backbone.trunk[0].weight, reference.conv1.weight)
    assert torch.equal(backbone.trunk[6][1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(backbone.trunk[1].running_var, reference.bn1.running_var)
    assert torch.equal(backbone.head[0][0].conv1.weight, reference.layer4[0].conv1.weight)
    # And the whole trunk computes what torchvision's model computes up to layer3 (eval mode).
    reference.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        expected = reference.layer3(reference.layer2(reference.layer1(x)))
        torch.testing.assert_close(backbone.trunk(images), expected, rtol=1e-4, atol=1e-4)


def test_classifier_weights_for_ssd_come_from_the_same_file(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"model": reference.state_dict()}, path)  # a checkpoint wrapping the state dict works too
    model = classifier_model("resnet18", str(path))
    assert torch.equal(model.fc.weight, reference.fc.weight)


def test_tiny_resnet_has_random_weights_only_and_freezes_bottom_stages():
    with pytest.raises(ConfigError, match="model.pretrained.*tiny_resnet"):
        build_backbone("tiny_resnet", pretrained="imagenet")
    backbone = build_backbone("tiny_resnet", trainable_layers=2)  # layer2, layer3 train; stem, layer1 frozen
    frozen = {name.split(".")[0] for name, p in backbone.trunk.named_parameters() if not p.requires_grad}
    assert frozen == {"0", "1"}
    assert all(p.requires_grad for p in backbone.head.parameters())


def test_bad_path_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained.*not a file"):
        build_backbone("resnet18", pretrained=str(tmp_path / "missing.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(Exception, match="wrong.pth.*not a torchvision resnet18 state dict"):
        build_backbone("resnet18", pretrained=str(wrong))


def _trainable_stage_names(backbone):
    return {name for name, p in backbone.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("trainable", [0, 1, 3, 5])
def test_resnet_trainable_layers_freezes_exactly_the_bottom_stages(trainable):
    backbone = build_backbone("resnet18", trainable_layers=trainable)
    model_stage = {  # module prefix inside the backbone -> torchvision stage name
        "trunk.0.": "conv1", "trunk.1.": "conv1", "trunk.4.": "layer1", "trunk.5.": "layer2", "trunk.6.": "layer3",
        "head.0.": "layer4",
    }
    expected_trainable = set(resnet.RESNET_STAGES[len(resnet.RESNET_STAGES) - trainable :])
    for name, parameter in backbone.named_parameters():
        stage = next(stage for prefix, stage in model_stage.items() if name.startswith(prefix))
        assert parameter.requires_grad == (stage in expected_trainable), name


@pytest.mark.parametrize("trainable", [0, 3])
def test_vgg_trainable_layers_freezes_the_bottom_conv_blocks(trainable):
    backbone = build_backbone("vgg16", trainable_layers=trainable)
    convs = [m for m in backbone.trunk if isinstance(m, torch.nn.Conv2d)]
    blocks = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]  # conv1_1 .. conv5_3 -> block index
    for conv, block in zip(convs, blocks, strict=True):
        assert conv.weight.requires_grad == (block >= 5 - trainable)
    assert all(p.requires_grad for p in backbone.head.parameters())  # fc6/fc7 always train


def test_default_trainable_layers():
    # Random init: everything trains (with weights: all but the lowest stage, tested with a cached file below).
    assert all(p.requires_grad for p in build_backbone("resnet18").parameters())


@pytest.mark.parametrize("bad", [-1, 6])
def test_bad_trainable_layers_names_the_key_and_range(bad):
    with pytest.raises(ConfigError, match=r"model.trainable_layers.*resnet18.*0\.\.5"):
        build_backbone("resnet18", trainable_layers=bad)


def test_imagenet_not_cached_and_offline_says_what_to_download(offline):
    with pytest.raises(ConfigError) as error:
        build_backbone("resnet18", pretrained="imagenet")
    message = str(error.value)
    assert "\n" not in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(offline / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "model.pretrained" in message
    assert not (offline / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_imagenet_cached_file_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    backbone = build_backbone("resnet18", pretrained="imagenet")
    assert torch.equal(backbone.trunk[0].weight, reference.conv1.weight)
    # With weights, the default trains every stage but the lowest: conv1 (and its norm) frozen, layer1 trains.
    assert not backbone.trunk[0].weight.requires_grad and backbone.trunk[4][0].conv1.weight.requires_grad


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_mobilenet_v3_imagenet_transfer_from_a_local_file(tmp_path, name):
    torch.manual_seed(4)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone(name, pretrained=str(path)).eval()
    norms = _norms(backbone)
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    images = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        features = reference.features(images)
        pooled = backbone.head(backbone.trunk(images))
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainable", [0, 1, 4, 6])
def test_mobilenet_v3_trainable_layers_freezes_the_bottom_stages(trainable):
    backbone = build_backbone("mobilenet_v3_large", trainable_layers=trainable)
    blocks = [*backbone.trunk, *backbone.head[:-2]]  # the 17 `features` blocks, in order
    starts = mobilenet_v3.mobilenet_v3_stage_starts(torch.nn.Sequential(*blocks))
    assert starts == [0, 2, 4, 7, 13, 16]
    first_trainable = len(blocks) if trainable == 0 else starts[len(starts) - trainable]
    for index, block in enumerate(blocks):
        assert all(p.requires_grad == (index >= first_trainable) for p in block.parameters()), index
    with pytest.raises(ConfigError, match=r"model.trainable_layers.*mobilenet_v3_large.*0\.\.6"):
        build_backbone("mobilenet_v3_large", trainable_layers=7)
def test_fpn_trunk_gives_five_levels_and_an_mlp_head():
    torch.manual_seed(0)
    backbone = build_backbone("resnet50_fpn").eval()
    assert backbone.is_pyramid and backbone.stride == (4, 8, 16, 32, 64) and backbone.roi_levels == 4
    assert (backbone.out_channels, backbone.head_out_channels, backbone.roi_output_size) == (256, 1024, 7)
    with torch.no_grad():
        maps = backbone.trunk(torch.randn(1, 3, 64, 128))
        assert [tuple(m.shape) for m in maps] == [(1, 256, 64 // s, 128 // s) for s in backbone.stride]
        assert backbone.head(torch.randn(3, 256, 7, 7)).shape == (3, 1024)


def test_fpn_trunk_parameter_names_are_torchvisions():
    ours = build_backbone("resnet50_fpn").trunk.state_dict()
    theirs = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    expected = {key.removeprefix("backbone."): value.shape
                for key, value in theirs.state_dict().items() if key.startswith("backbone.")}
    assert {k: v.shape for k, v in ours.items()} == expected


def test_fpn_with_detector_weights_freezes_like_torchvision():
    backbone = build_backbone("resnet50_fpn", pretrained=weight_files.DETECTOR_WEIGHTS, trainable_layers=3)
    norms = _norms(backbone)
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    body = backbone.trunk.body
    # torchvision's default (and our configs'), 3: layer2..layer4 train, conv1 and layer1 are frozen; the
    # pyramid trains.
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and backbone.trunk.fpn.inner_blocks[0][0].weight.requires_grad


def test_each_backbone_declares_the_families_it_builds_for():
    """One registry for both detector families: the SSD trunks are the plain networks, not the two-stage-only
    cuts (vgg16_bn, the pyramids), and asking a family for a name it lacks is one line listing its names."""
    assert set(EXPECTED) | PYRAMIDS <= set(backbone_names("two_stage"))
    ssd_names = set(backbone_names("ssd"))
    assert {"vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large", "mobilenet_v3_small",
            "tiny_resnet"} <= ssd_names and not ssd_names & (PYRAMIDS | {"vgg16_bn"})
    allowed = ", ".join(sorted(ssd_names))
    with pytest.raises(ConfigError, match=rf"^model.backbone: 'resnet50_fpn' has no SSD trunk \(allowed for SSD: "
                                          rf"{allowed}\)$"):
        build_ssd_trunk("resnet50_fpn", 6, 300)
