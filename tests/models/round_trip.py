"""State-dict checks shared by the detector weight tests, and where the COCO files are cached."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from detect.models.backbones.weight_files import hub_weight_file
from detect.models.weights import MAPPINGS, DetectorMapping


def coco_weight_file(arch: str, backbone: str) -> Path:
    """Where the torch hub cache keeps the COCO checkpoint of the torchvision twin of `arch` on `backbone`."""
    return hub_weight_file(MAPPINGS[(arch, backbone)].coco_weights.url)


def assert_round_trips(mapping: DetectorMapping, ours: nn.Module, theirs: nn.Module) -> None:
    """Ours exported to torchvision's layout equals `theirs` (whose weights ours loaded), key for key,
    and converts back to ours exactly. Ours has no background box-regression rows: exported as zeros."""
    exported = mapping.to_torchvision(ours.state_dict())
    reference = {k: v for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(exported) == set(reference)
    for key, value in reference.items():
        if key.startswith("roi_heads.box_predictor.bbox_pred."):
            assert torch.equal(exported[key][4:], value[4:]) and not exported[key][:4].any()
        else:
            assert torch.equal(exported[key], value), key
    back = mapping.to_ours(exported)
    assert set(back) == set(ours.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def settle_batchnorm(model: nn.Module, seed: int) -> None:
    """A random-weight torchvision detector made to behave like a loaded one: BatchNorm statistics of
    one random batch (so activations stay in a normal range), then FrozenBatchNorm2d as with COCO
    weights."""
    from detect.models.backbones.freezing import frozen_batchnorm

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    model.backbone.body.train()
    with torch.no_grad():
        model.backbone.body(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(seed)))
    frozen_batchnorm(model.backbone.body)
