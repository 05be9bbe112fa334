"""fold_batchnorm: the folded copy predicts what the model predicts; the model itself is untouched."""

from __future__ import annotations

import pytest
import torch

from detect.config import load_config
from detect.models.build import build_model
from detect.models.fuse import fold_batchnorm


def _with_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so that folding has something to fold."""
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.running_mean.uniform_(-0.2, 0.2)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_folded_ssdlite_gives_the_same_outputs_and_leaves_the_model_alone():
    torch.manual_seed(0)
    cfg = load_config("synthetic_ssdlite", ["input.size=96", "model.ssd.aspect_ratios=[[2],[2],[2],[2]]"])
    model = _with_statistics(build_model(cfg.model, cfg.input, 3))
    norms_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == norms_before > 50
    images, sizes = torch.randn(2, 3, 96, 96), torch.tensor([[96, 96], [96, 96]])
    with torch.no_grad():
        expected, found = model(images, sizes), folded(images, sizes)
    torch.testing.assert_close(found["cls_logits"], expected["cls_logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found["box_regression"], expected["box_regression"], atol=1e-4, rtol=1e-4)


def test_frozen_batchnorm_and_lone_norms_stay():
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4))
    folded = fold_batchnorm(block)
    assert isinstance(folded[2], torch.nn.BatchNorm2d)  # not after a convolution: kept


def _small_faster_rcnn(backbone: str) -> torch.nn.Module:
    from detect.config import model_section
    from tests.models.test_faster_rcnn import SMALL

    torch.manual_seed(0)
    overrides = {"backbone": backbone}
    if backbone.endswith("_fpn"):
        overrides.update(roi_output_size=7, anchors={"sizes": [16, 32, 64, 128, 256]})
    cfg = model_section({**SMALL, **overrides})
    from detect.config import InputConfig

    return build_model(cfg, InputConfig(), 3)


def _norms(model: torch.nn.Module) -> int:
    from torchvision.ops.misc import FrozenBatchNorm2d

    return sum(isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())


@pytest.mark.parametrize("backbone", ["resnet18", "resnet18_fpn"])
@pytest.mark.parametrize("frozen", [False, True])
def test_resnet_blocks_and_frozen_batchnorm_fold(backbone, frozen):
    """torchvision's ResNet blocks (conv / bn attribute pairs), the FPN trunk's layer getter and
    FrozenBatchNorm2d (trained weights) fold too; the outputs stay, and NHWC inference is switched on."""
    from detect.models.backbones.freezing import frozen_batchnorm

    model = _with_statistics(_small_faster_rcnn(backbone))
    if frozen:
        frozen_batchnorm(model)
    before = _norms(model)
    folded = fold_batchnorm(model)
    assert before > 15 and _norms(folded) == 0 and _norms(model) == before
    assert folded.nhwc_inference and not model.nhwc_inference
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    sizes = torch.tensor([[96, 96], [96, 80]])
    with torch.no_grad():
        expected, found = model(images, sizes), folded(images, sizes)
    for key in ("rois", "class_logits", "box_deltas"):
        torch.testing.assert_close(found[key], expected[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["faster_rcnn", "ssd"])
def test_cpu_trunks_see_nhwc_maps_in_training_and_folded_inference_only(arch):
    if arch == "ssd":
        cfg = load_config("synthetic_ssd")
        model, side = build_model(cfg.model, cfg.input, 3), cfg.input.size
        trunk = model.trunk
    else:
        model, side = _small_faster_rcnn("resnet18"), 96
        trunk = model.backbone.trunk
    layouts = []
    trunk.register_forward_pre_hook(
        lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    images, sizes = torch.randn(2, 3, side, side), torch.tensor([[side, side]] * 2)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    model.train()(images, sizes, targets)
    with torch.no_grad():
        model.eval()(images, sizes)
        fold_batchnorm(model)(images, sizes)
    assert layouts == [True, False, True]
