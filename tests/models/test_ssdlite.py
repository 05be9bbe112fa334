"""SSDlite: MobileNetV3 trunk and separable head shapes, the torchvision key mapping, and parity with
torchvision's `ssdlite320_mobilenet_v3_large` for the same weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchmarks.torchvision_adapter import switch_off_transform
from detect.config import load_config
from detect.detections.padded import split_detections
from detect.errors import CheckpointError, ConfigError
from detect.models import weights
from detect.models.backbones.mobilenet_v3 import MobileNetV3Trunk
from detect.models.build import build_model

NUM_CLASSES = 4  # foreground; torchvision's model gets 5 with background


def _torchvision_ssdlite(seed: int = 0, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """torchvision's SSDlite320 (reduced tail: no ImageNet weights) with seeded weights and BatchNorm
    statistics measured on smooth random images, so that its outputs vary over the image (with the
    initial statistics every activation saturates and all locations score alike)."""
    torch.manual_seed(seed)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes + 1
    )
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
        model.head(list(model.backbone(_smooth_images(4, seed=seed + 100) * 2 - 1).values()))
    return model.eval()


def _smooth_images(count: int, seed: int) -> torch.Tensor:
    """0..1 RGB [count, 3, 320, 320]: smooth blobs, not pixel noise, so scores differ from place to
    place and the ranking has no ties to break differently."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 12, 12, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(320, 320), mode="bicubic").clamp(0, 1)


def _ours(overrides: list[str] = (), num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    cfg = load_config("voc_ssdlite320", list(overrides))
    return build_model(cfg.model, cfg.input, num_classes).eval()


@pytest.mark.parametrize("name, channels", [
    ("mobilenet_v3_large", [672, 480, 512, 256, 256, 128]),
    ("mobilenet_v3_small", [288, 288, 512, 256, 256, 128]),
])
def test_mobilenet_v3_trunk_maps(name, channels):
    torch.manual_seed(0)
    trunk = MobileNetV3Trunk(name, 6, reduced_tail=True).eval()
    with torch.no_grad():
        maps = trunk(torch.randn(2, 3, 320, 320))
    assert trunk.out_channels == channels
    assert [tuple(m.shape) for m in maps] == [(2, c, s, s) for c, s in zip(channels, [20, 10, 5, 3, 2, 1])]
    assert trunk.feature_map_sizes(320) == [(s, s) for s in [20, 10, 5, 3, 2, 1]]
    assert trunk.feature_map_sizes(192) == [tuple(m.shape[-2:]) for m in trunk(torch.randn(2, 3, 192, 192))]


def test_full_tail_with_imagenet_weights_and_reduced_tail_refused(tmp_path):
    path = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), path)
    trunk = MobileNetV3Trunk("mobilenet_v3_large", 6, pretrained=str(path), trainable_layers=2)
    assert trunk.out_channels[:2] == [672, 960]
    # trainable_layers 2 of 6: the stride-32 block (from its expansion layer, which ends the C4 part)
    # and the last layer train; the blocks below are frozen.
    assert not any(p.requires_grad for p in trunk.features[0][:-1].parameters())
    assert all(p.requires_grad for p in trunk.features[0][-1].parameters())
    assert all(p.requires_grad for p in trunk.features[1].parameters())
    assert all(p.requires_grad for p in trunk.extra.parameters())
    with pytest.raises(ConfigError, match="model.ssd.reduced_tail"):
        MobileNetV3Trunk("mobilenet_v3_large", 6, pretrained=str(path), reduced_tail=True)


def test_head_outputs_and_separable_blocks():
    model = _ours(["model.pretrained=none"])
    images = torch.randn(2, 3, 320, 320)
    outputs = model(images, torch.tensor([[320, 320], [320, 320]]))
    num_priors = 6 * (20 * 20 + 10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1)
    assert outputs["cls_logits"].shape == (2, num_priors, NUM_CLASSES + 1)
    assert outputs["box_regression"].shape == (2, num_priors, 4)
    assert outputs["priors"].shape == (num_priors, 4)
    depthwise = model.head.cls_convs[0][0][0]
    assert depthwise.groups == depthwise.in_channels == 672 and depthwise.kernel_size == (3, 3)
    # Default boxes clamped by size: edge boxes keep their centre and reach outside the image.
    assert outputs["priors"].min() < 0 and outputs["priors"].max() > 320


def test_training_step_with_an_image_without_objects():
    model = _ours(["model.pretrained=none"]).train()
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 200.0, 150.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(torch.randn(2, 3, 320, 320), torch.tensor([[320, 320]] * 2), targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.head.cls_convs[0][1].weight.grad.abs().sum() > 0


def test_state_dict_keys_map_both_ways():
    reference = _torchvision_ssdlite()
    mapping = weights.MAPPINGS["ssdlite", "mobilenet_v3_large"]
    ours = mapping.to_ours(reference.state_dict())
    model = _ours(["model.pretrained=none"])
    assert ours.keys() == model.state_dict().keys()
    assert all(ours[key].shape == value.shape for key, value in model.state_dict().items())
    assert mapping.to_torchvision(ours).keys() == reference.state_dict().keys()


def test_a_state_dict_of_another_class_count_keeps_all_but_the_class_rows(tmp_path):
    """Class names unknown and counts differ: no row can be matched, the classification layers start fresh."""
    reference = _torchvision_ssdlite()
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    model = _ours([f"model.pretrained={path}"], NUM_CLASSES + 1)  # 6 rows per default box; the file has 5
    tv_cls = reference.head.classification_head.module_list
    assert model.head.cls_convs[0][1].weight.shape[0] == 6 * (NUM_CLASSES + 2)
    assert not torch.equal(model.head.cls_convs[0][1].weight[:NUM_CLASSES + 1], tv_cls[0][1].weight[:NUM_CLASSES + 1])
    # The depthwise part is not per class.
    assert torch.equal(model.head.cls_convs[0][0][0].weight, tv_cls[0][0][0].weight)
    assert torch.equal(model.head.box_convs[3][1].weight, reference.head.regression_head.module_list[3][1].weight)
    assert torch.equal(model.trunk.extra[0][0][0].weight, reference.backbone.extra[0][0][0].weight)


@pytest.mark.parametrize("override, problem", [
    ("model.backbone=mobilenet_v3_small", "missing trunk.features"),
    ("model.ssd.aspect_ratios=[[2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0]]", "unexpected"),
])
def test_a_state_dict_of_another_trunk_or_map_count_is_one_line(tmp_path, override, problem):
    path = tmp_path / "tv.pth"
    torch.save(_torchvision_ssdlite().state_dict(), path)
    cfg = load_config("voc_ssdlite320", [f"model.pretrained={path}", override])
    with pytest.raises(CheckpointError) as error:
        build_model(cfg.model, cfg.input, NUM_CLASSES)
    message = str(error.value)
    assert message.startswith(f"{path}: weights do not fit") and problem in message and "\n" not in message


@pytest.mark.parametrize("num_classes", [NUM_CLASSES, 90])  # 90: COCO's ids, as its COCO weights
def test_same_detections_as_torchvision_for_the_same_weights(tmp_path, num_classes):
    reference = _torchvision_ssdlite(seed=1, num_classes=num_classes)
    path = tmp_path / "ssdlite.pth"
    torch.save(reference.state_dict(), path)
    model = _ours([f"model.pretrained={path}"], num_classes)
    assert list(load_config("voc_ssdlite320").input.mean) == reference.transform.image_mean  # its input scaling
    assert list(load_config("voc_ssdlite320").input.std) == reference.transform.image_std

    pixels = _smooth_images(2, seed=2)  # resized 0..1 RGB
    images = (pixels - 0.5) / 0.5
    sizes = torch.tensor([[320, 320], [320, 320]])
    with torch.no_grad():
        expected = switch_off_transform(reference)(list(images))  # the same [-1, 1] images as ours
        found = split_detections(model.postprocess(model(images, sizes), sizes, torch.ones(2, 2)))
    for ours, theirs in zip(found, expected):
        assert len(theirs["scores"]) > 50  # the comparison covers many detections
        assert len(ours["scores"]) == len(theirs["scores"])
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-3)
