"""Tiny real detectors (random weights) for the inference and export tests, built once per session.

Both heads at a small input size on resnet18: SSD (fixed 96 px, three feature maps) and Faster R-CNN
(keep-ratio 96..128 px, 16 proposals per image), so that a forward pass takes well under a second on
a CPU. `rigged` turns a model into one that finds nothing in dark images: the trunk's features are
zeroed for an image whose brightest normalized pixel is below 0 (any all-dark image), which leaves
SSD with uniform class scores (1 / (C + 1) = 0.25, below its score threshold 0.3 set here) and
Faster R-CNN with no valid proposals. Bright or noisy images keep their random-weight detections.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from detect.config import config_to_dict, load_config
from detect.models.build import build_model

CLASS_NAMES = ["circle", "square", "triangle"]

TINY_OVERRIDES = {
    "ssd": ("synthetic_ssd", ["input.size=64", "model.ssd.aspect_ratios=[[2],[2],[2]]", "model.ssd.score_threshold=0.3",
                              "model.ssd.detections_per_img=50"]),
    "faster_rcnn": ("synthetic_faster_rcnn", [
        "input.min_size=64", "input.max_size=96", "model.anchors.sizes=[16,32,64]",
        "model.rpn.pre_nms_top_n_test=200", "model.rpn.post_nms_top_n_test=8", "model.roi_output_size=7",
        "model.roi_heads.detections_per_img=30",
    ]),
}


def tiny_config(arch: str):
    name, overrides = TINY_OVERRIDES[arch]
    return load_config(name, overrides)


class _DarkGate(nn.Module):
    """Multiplies a module's output by 0 for images whose brightest normalized pixel is below 0."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, images):
        gate = (images.flatten(1).amax(dim=1) > 0).to(images.dtype)
        out = self.inner(images)
        if isinstance(out, (list, tuple)):
            return [x * gate.view(-1, 1, 1, 1) for x in out]
        return out * gate.view(-1, 1, 1, 1)


class _ValidWhereFeatures(nn.Module):
    """An RPN whose proposals are invalid for images with all-zero features (gated dark images)."""

    def __init__(self, rpn: nn.Module):
        super().__init__()
        self.rpn = rpn

    def forward(self, features, image_sizes, *args):
        proposals, valid, losses = self.rpn(features, image_sizes, *args)
        has_features = features.flatten(1).abs().amax(dim=1) > 0
        return proposals, valid & has_features[:, None], losses


def rigged(model: nn.Module) -> nn.Module:
    """A copy of the model that finds nothing in dark images (see the module docstring)."""
    model = copy.deepcopy(model)
    if hasattr(model, "trunk"):  # SSD
        model.trunk = _DarkGate(model.trunk)
    else:
        model.backbone = _DarkGate(model.backbone)
        model.rpn = _ValidWhereFeatures(model.rpn)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_models():
    """arch -> (model, config), random weights with fixed seeds."""
    models = {}
    for seed, arch in enumerate(("ssd", "faster_rcnn")):
        torch.manual_seed(seed)
        config = tiny_config(arch)
        models[arch] = (build_model(config.model, config.input, len(CLASS_NAMES)).eval(), config)
    return models


@pytest.fixture(scope="session")
def checkpoints(tiny_models, tmp_path_factory):
    """arch -> path of a checkpoint file {model, config, class_names} of the tiny model."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for arch, (model, config) in tiny_models.items():
        paths[arch] = folder / f"{arch}.pt"
        torch.save(
            {"model": model.state_dict(), "config": config_to_dict(config), "class_names": CLASS_NAMES}, paths[arch])
    return paths


def noise_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def dark_image(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread: these tiny convolutions gain nothing from two, and on a busy 2-core machine
    two threads spin-wait on each other (a 64 px SSD forward pass: 0.04 s on one, 1 s on two)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
