"""The SSD model: builders, output shapes, images without objects, weight loading, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detect.config import InputConfig, SSDConfig, SSDModelConfig, load_config
from detect.detections.padded import split_detections
from detect.errors import ConfigError
from detect.models.backbones import vgg
from detect.models.build import build_model
from detect.models.default_boxes import box_scales
from detect.models.ssd import SSD, build_ssd

STEPS_TINY = 40


# A 160 px input gives 20, 10, 5, 3, 1 maps on a ResNet trunk (stride 8 first).
FIVE_MAPS = [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]


def _model(backbone: str, size: int, num_classes: int = 3, **ssd) -> torch.nn.Module:
    model_cfg = SSDModelConfig(arch="ssd", backbone=backbone, ssd=SSDConfig(**ssd))
    return build_ssd(model_cfg, InputConfig(resize="fixed", size=size, size_divisible=1), num_classes)


@pytest.mark.parametrize(
    "config, size, maps, num_priors",
    [
        ("voc_ssd300", 300, [38, 19, 10, 5, 3, 1], 8732),
        ("voc_ssd512", 512, [64, 32, 16, 8, 4, 2, 1], 24564),
        ("synthetic_ssd", 192, [24, 12, 6, 3, 1], 3424),
    ],
)
def test_output_shapes_of_the_shipped_configs(config, size, maps, num_priors):
    cfg = load_config(config, ["model.pretrained=none"])
    model = build_model(cfg.model, cfg.input, 20).eval()
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        features = model.trunk(images)
        outputs = model(images, torch.tensor([[size, size]]))
    assert [f.shape[-1] for f in features] == maps
    assert [tuple(s) for s in model.trunk.feature_map_sizes(size)] == [(m, m) for m in maps]
    assert [f.shape[1] for f in features] == model.trunk.out_channels
    assert outputs["cls_logits"].shape == (1, num_priors, 21)
    assert outputs["box_regression"].shape == (1, num_priors, 4)
    assert outputs["priors"].shape == (num_priors, 4)
    detections = split_detections(model.postprocess(outputs, torch.tensor([[size, size]]), torch.tensor([[0.5, 0.5]])))
    assert detections[0]["boxes"].shape[1] == 4 and len(detections[0]["boxes"]) <= 200
    assert (detections[0]["boxes"] <= 2 * size + 1e-3).all()


def test_vgg_trunk_has_the_paper_layers():
    trunk = _model("vgg16", 300).trunk
    fc6 = [m for m in trunk.fc7 if isinstance(m, torch.nn.Conv2d)][-2]
    assert fc6.dilation == (6, 6) and fc6.kernel_size == (3, 3) and fc6.out_channels == 1024
    pools = [m for m in trunk.fc7 if isinstance(m, torch.nn.MaxPool2d)]
    assert pools[-1].kernel_size == 3 and pools[-1].stride == 1
    assert torch.all(trunk.l2norm.weight == 20.0)
    assert trunk.out_channels == [512, 1024, 512, 256, 256, 256]


def test_imagenet_fc_weights_are_subsampled_into_fc6_fc7(monkeypatch):
    loaded = {}

    def fake_load(model, name, pretrained):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in (model.classifier[0], model.classifier[3]):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
        loaded["classifier"] = model.classifier
        return model

    monkeypatch.setattr(vgg, "load_classifier_weights", fake_load)
    trunk = vgg.VGGTrunk(6, 300, pretrained="weights.pth")
    fc6, fc7 = [m for m in trunk.fc7 if isinstance(m, torch.nn.Conv2d)][-2:]
    source_fc6, source_fc7 = loaded["classifier"][0], loaded["classifier"][3]
    assert torch.equal(fc6.weight, source_fc6.weight.view(4096, 512, 7, 7)[::4, :, ::3, ::3])
    assert torch.equal(fc6.bias, source_fc6.bias[::4])
    assert torch.equal(fc7.weight[:, :, 0, 0], source_fc7.weight[::4, ::4])
    # With weights, conv1 is frozen by default and the rest trains.
    assert not any(p.requires_grad for p in trunk.conv4_3[0].parameters())
    assert all(p.requires_grad for p in trunk.conv4_3[5].parameters())


def test_bad_ssd_configs_are_config_errors():
    with pytest.raises(ConfigError, match="feature_maps"):
        _model("resnet18", 160, feature_maps=[19, 10, 5, 3, 1], aspect_ratios=FIVE_MAPS)
    with pytest.raises(ConfigError, match="too small"):
        _model("resnet18", 64, aspect_ratios=[[2.0]] * 7)
    with pytest.raises(ConfigError, match="no SSD trunk"):
        _model("mobilenet", 160)
    with pytest.raises(ConfigError, match="fixed"):
        build_ssd(SSDModelConfig(arch="ssd", backbone="resnet18"), InputConfig(resize="keep_ratio"), 3)


def test_training_step_with_an_image_without_objects():
    torch.manual_seed(0)
    model = _model("resnet18", 160, aspect_ratios=FIVE_MAPS).train()
    images = torch.randn(2, 3, 160, 160)
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model(images, torch.tensor([[160, 160]] * 2), targets)
    assert set(losses) == {"loss_cls", "loss_box"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    empty_only = model(images[1:], torch.tensor([[160, 160]]), targets[1:])
    assert torch.isfinite(empty_only["loss_cls"]) and empty_only["loss_box"] == 0


# ---------------------------------------------------------------------------------------------------
# Overfitting four drawn images


def _shapes_images(size: int = 160) -> tuple[torch.Tensor, list[dict]]:
    """4 images of filled squares (label 1), discs (2) and wide bars (3) on a noisy background."""
    generator = np.random.default_rng(0)
    images, targets = [], []
    layouts = [
        [(1, 20, 30, 60, 60), (2, 100, 90, 50, 50)],
        [(3, 30, 40, 100, 36), (1, 90, 100, 44, 44)],
        [(2, 15, 15, 70, 70), (3, 20, 110, 120, 34), (1, 110, 30, 36, 36)],
        [(2, 60, 50, 56, 56)],
    ]
    yy, xx = np.mgrid[0:size, 0:size]
    for layout in layouts:
        image = generator.uniform(0.0, 0.3, size=(size, size, 3)).astype(np.float32)
        boxes, labels = [], []
        for label, *box in layout:
            x, y, w, h = (v * size / 160 for v in box)
            colour = {1: (0.9, 0.2, 0.2), 2: (0.2, 0.9, 0.2), 3: (0.2, 0.3, 0.95)}[label]
            if label == 2:
                inside = (xx - x - w / 2) ** 2 + (yy - y - h / 2) ** 2 <= (w / 2) ** 2
            else:
                inside = (xx >= x) & (xx < x + w) & (yy >= y) & (yy < y + h)
            image[inside] = colour
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    images = torch.stack(images)
    return (images - images.mean()) / images.std(), targets


def _average_precision(detections: list[dict], targets: list[dict], label: int, iou_thresh: float = 0.5) -> float:
    """All-point interpolated AP of one class (VOC12 style)."""
    scored = []
    num_gt = sum(int((t["labels"] == label).sum()) for t in targets)
    for image, (det, target) in enumerate(zip(detections, targets)):
        keep = det["labels"] == label
        for box, score in zip(det["boxes"][keep], det["scores"][keep]):
            scored.append((float(score), image, box))
    scored.sort(key=lambda item: -item[0])
    taken = [torch.zeros(len(t["labels"]), dtype=torch.bool) for t in targets]
    hits = []
    for _, image, box in scored:
        gt = targets[image]["boxes"]
        iou = box_iou(box[None], gt)[0].masked_fill(targets[image]["labels"] != label, -1)
        best = int(iou.argmax()) if len(gt) else -1
        hit = best >= 0 and iou[best] >= iou_thresh and not taken[image][best]
        if hit:
            taken[image][best] = True
        hits.append(hit)
    hits = np.array(hits, dtype=np.float64)
    true_pos = np.cumsum(hits)
    recall = np.concatenate([[0.0], true_pos / max(num_gt, 1), [1.0]])
    precision = np.concatenate([[0.0], true_pos / np.arange(1, len(hits) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


class TinyTrunk(torch.nn.Module):
    """A few strided convolutions: 128 px -> maps 16, 8, 4, 2, 1 (a trunk cheap enough for CPU tests)."""

    out_channels = [32, 64, 64, 64, 64]

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 3, 2, 1), torch.nn.GroupNorm(8, cout), torch.nn.ReLU())

        self.stem = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 32))
        self.extras = torch.nn.ModuleList([block(32, 64), block(64, 64), block(64, 64), block(64, 64)])

    def feature_map_sizes(self, input_size):
        return [(input_size // 8 // 2**k,) * 2 for k in range(5)]

    def forward(self, images):
        maps = [self.stem(images)]
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps


def _overfit(model: torch.nn.Module, size: int, steps: int, lr: float) -> float:
    torch.manual_seed(0)
    images, targets = _shapes_images(size)
    image_sizes = torch.tensor([[size, size]] * 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0)
    model.train()
    for _ in range(steps):
        losses = model(images, image_sizes, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        detections = split_detections(model.postprocess(model(images, image_sizes), image_sizes, torch.ones(4, 2)))
    return float(np.mean([_average_precision(detections, targets, label) for label in (1, 2, 3)]))


def test_overfits_four_images_with_a_tiny_trunk():
    torch.manual_seed(0)
    model = SSD(TinyTrunk(), 3, FIVE_MAPS, box_scales(5, 0.2, 0.9, 0.1))
    mean_ap = _overfit(model, 128, steps=STEPS_TINY, lr=3e-3)
    assert mean_ap >= 0.9, f"mAP@0.5 {mean_ap:.3f} after overfitting 4 images"


def test_overfits_four_images_with_tiny_resnet():
    torch.manual_seed(0)
    mean_ap = _overfit(_model("tiny_resnet", 128, aspect_ratios=FIVE_MAPS), 128, steps=STEPS_TINY, lr=3e-3)
    assert mean_ap >= 0.9, f"mAP@0.5 {mean_ap:.3f} after overfitting 4 images"


@pytest.mark.slow
def test_overfits_four_images_with_resnet18():
    torch.manual_seed(0)
    mean_ap = _overfit(_model("resnet18", 128, aspect_ratios=FIVE_MAPS), 128, steps=60, lr=2e-3)
    assert mean_ap >= 0.9, f"mAP@0.5 {mean_ap:.3f} after overfitting 4 images"
