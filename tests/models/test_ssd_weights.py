"""Whole-detector weights for the SSD family: configs/voc_ssd300_coco.yaml loaded with a torchvision
ssd300_vgg16 state dict gives its detections; the state dict round-trips; `pretrained: coco` for
SSD300 and SSDlite320 (offline error, the cached file, classification rows carried by class name in
every default-box block). SSDlite's own parity test is in test_ssdlite.py."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchmarks.torchvision_adapter import switch_off_transform
from detect.config import load_config
from detect.detections.padded import split_detections
from detect.errors import ConfigError
from detect.models.build import build_model
from detect.models.weights import MAPPINGS
from tests.models.round_trip import coco_weight_file

COCO_NAMES = torchvision.models.detection.SSD300_VGG16_Weights.COCO_V1.meta["categories"]
COCO_CLASSES = len(COCO_NAMES) - 1  # 90 foreground ids, "N/A" ones included
# Our config -> torchvision's builder of the same detector and the URL of its COCO weights.
VARIANTS = {
    "voc_ssd300_coco": (torchvision.models.detection.ssd300_vgg16,
                        "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth"),
    "voc_ssdlite320": (torchvision.models.detection.ssdlite320_mobilenet_v3_large,
                       "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth"),
}


def _torchvision_model(config: str, seed: int = 0) -> torch.nn.Module:
    """torchvision's detector with COCO's class count and seeded random weights (no ImageNet trunk:
    SSDlite then has the reduced tail, as its COCO checkpoint)."""
    torch.manual_seed(seed)
    builder = VARIANTS[config][0]
    return builder(weights=None, weights_backbone=None, num_classes=COCO_CLASSES + 1).eval()


@pytest.fixture(scope="module")
def ssd300_file(tmp_path_factory):
    model = _torchvision_model("voc_ssd300_coco")
    path = tmp_path_factory.mktemp("weights") / "ssd300_vgg16.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    """0..1 RGB [count, 3, size, size]: smooth blobs, so that scores vary from place to place."""
    coarse = torch.rand(count, 3, 12, 12, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)


def test_ssd300_detections_equal_torchvisions_with_its_weights(ssd300_file):
    theirs, path = ssd300_file
    config = load_config("voc_ssd300_coco", [f"model.pretrained={path}"])
    ours = build_model(config.model, config.input, COCO_CLASSES).eval()
    # The config scales inputs as torchvision's model does (its weights expect it) ...
    assert list(config.input.mean) == theirs.transform.image_mean
    assert list(config.input.std) == pytest.approx(theirs.transform.image_std, abs=1e-12)
    # ... and both get the same scaled pixels: torchvision's resize and normalization are switched off.
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (config.input.mean, config.input.std))
    images = (_smooth_images(2, 300, seed=2) - mean) / std
    sizes = torch.tensor([[300, 300], [300, 300]])
    with torch.no_grad():
        found = split_detections(ours.postprocess(ours(images, sizes), sizes, torch.ones(2, 2)))
        expected = switch_off_transform(theirs)(list(images))
    for mine, reference in zip(found, expected):
        assert len(mine["scores"]) == len(reference["scores"]) == config.model.ssd.detections_per_img
        torch.testing.assert_close(mine["scores"], reference["scores"], rtol=0, atol=1e-4)
        assert torch.equal(mine["labels"], reference["labels"])
        torch.testing.assert_close(mine["boxes"], reference["boxes"], rtol=0, atol=1e-3)
    assert len(found[0]["labels"].unique()) > 5  # many classes take part


def test_ssd300_state_dict_round_trips_through_torchvisions_layout(ssd300_file):
    theirs, path = ssd300_file
    config = load_config("voc_ssd300_coco", [f"model.pretrained={path}"])
    ours = build_model(config.model, config.input, COCO_CLASSES)
    exported = MAPPINGS["ssd", "vgg16"].to_torchvision(ours.state_dict())
    assert exported.keys() == theirs.state_dict().keys()
    assert all(torch.equal(exported[key], value) for key, value in theirs.state_dict().items())


@pytest.mark.parametrize("config_name", list(VARIANTS))
def test_coco_offline_says_which_file_to_put_where(offline, config_name):
    config = load_config(config_name, ["model.pretrained=coco"])
    with pytest.raises(ConfigError) as error:
        build_model(config.model, config.input, 2, ["person", "dog"])
    message = str(error.value)
    cached = coco_weight_file(config.model.arch, config.model.backbone)
    assert "\n" not in message and "model.pretrained=coco" in message and VARIANTS[config_name][1] in message
    assert str(cached) in message and str(cached).startswith(str(offline))


@pytest.mark.parametrize("config_name", list(VARIANTS))
def test_coco_rows_carried_by_class_name_in_every_default_box_block(config_name, tmp_path, monkeypatch):
    """The cached COCO file is used without network; our classes person, raccoon (not COCO's) and dog
    get COCO's person and dog rows and fresh raccoon rows, for each default box of each map."""
    theirs = _torchvision_model(config_name, seed=3)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    config = load_config(config_name, ["model.pretrained=coco"])
    cached = coco_weight_file(config.model.arch, config.model.backbone)
    cached.parent.mkdir(parents=True)
    torch.save(theirs.state_dict(), cached)
    torch.manual_seed(0)
    model = build_model(config.model, config.input, 3, ["person", "raccoon", "dog"])
    coco_rows = [0, COCO_NAMES.index("person"), None, COCO_NAMES.index("dog")]  # ours 0..3 -> COCO's
    assert coco_rows[1] == 1 and coco_rows[3] == 18
    for ours_conv, tv_conv in zip(
        _last_convs(model.head.cls_convs), _last_convs(theirs.head.classification_head.module_list)):
        blocks = ours_conv.out_channels // 4  # default boxes per location; 4 rows each: background + 3
        assert tv_conv.out_channels == blocks * (COCO_CLASSES + 1)
        for block in range(blocks):
            for label, coco_label in enumerate(coco_rows):
                row, tv_row = block * 4 + label, block * (COCO_CLASSES + 1) + (coco_label or 0)
                loaded = torch.equal(ours_conv.weight[row], tv_conv.weight[tv_row])
                assert loaded == (coco_label is not None), (block, label)
    box_convs = zip(_last_convs(model.head.box_convs), _last_convs(theirs.head.regression_head.module_list))
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in box_convs)


def _last_convs(blocks: torch.nn.ModuleList) -> list[torch.nn.Conv2d]:
    """Each map's prediction convolution: the block itself (SSD) or its last layer (SSDlite)."""
    return [block if isinstance(block, torch.nn.Conv2d) else block[-1] for block in blocks]


def test_detect_checkpoint_as_pretrained_keeps_rows_by_name(tmp_path):
    """Any SSD trunk (here tiny_resnet, which has no torchvision twin) starts from a detect checkpoint."""
    config = load_config("synthetic_ssd", ["model.pretrained=none"])
    source = build_model(config.model, config.input, 3, ["cat", "dog", "bird"])
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": source.state_dict(), "config": {}, "class_names": ["cat", "dog", "bird"]}, checkpoint)
    config = load_config("synthetic_ssd", [f"model.pretrained={checkpoint}"])
    model = build_model(config.model, config.input, 2, ["bird", "cat"])
    for ours, theirs in zip(model.head.cls_convs, source.head.cls_convs):
        blocks = ours.out_channels // 3
        ours_rows, source_rows = ours.weight.view(blocks, 3, -1), theirs.weight.view(blocks, 4, -1)
        assert torch.equal(ours_rows[:, 0], source_rows[:, 0])  # background
        assert torch.equal(ours_rows[:, 1], source_rows[:, 3])  # bird
        assert torch.equal(ours_rows[:, 2], source_rows[:, 1])  # cat
    assert torch.equal(model.trunk.layer3[0].conv1.weight, source.trunk.layer3[0].conv1.weight)
