"""The narrow ResNet trunk: stage shapes, the SSD trunk's maps, cost against ResNet-18, bad settings."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from detect.errors import ConfigError
from detect.models.backbones import build_ssd_trunk
from detect.models.backbones.tiny_resnet import TINY_RESNET_CHANNELS, TinyResNetTrunk, tiny_resnet_stages


def test_stage_shapes_and_strides():
    torch.manual_seed(0)
    stages = tiny_resnet_stages().eval()
    x = torch.randn(2, 3, 96, 128)
    strides = (4, 4, 8, 16, 32)
    with torch.no_grad():
        for stage, channels, stride in zip(stages, TINY_RESNET_CHANNELS, strides):
            x = stage(x)
            assert x.shape == (2, channels, 96 // stride, 128 // stride)


def test_residual_blocks_start_as_identity():
    """Each block's last BatchNorm starts at zero, so a block passes its shortcut through."""
    torch.manual_seed(0)
    layer1 = tiny_resnet_stages()[1].eval()
    x = torch.rand(1, TINY_RESNET_CHANNELS[0], 16, 16)  # non-negative, as after the stem's ReLU
    with torch.no_grad():
        torch.testing.assert_close(layer1(x), x)


@pytest.mark.parametrize("size, maps", [(192, [24, 12, 6, 3, 1]), (160, [20, 10, 5, 3, 1]), (100, [13, 7, 4, 2, 1])])
def test_ssd_trunk_maps_match_declared_sizes(size, maps):
    torch.manual_seed(0)
    trunk = build_ssd_trunk("tiny_resnet", 5, size).eval()
    with torch.no_grad():
        features = trunk(torch.randn(1, 3, size, size))
    assert [f.shape[-1] for f in features] == maps
    assert [s for s, _ in trunk.feature_map_sizes(size)] == maps
    assert [f.shape[1] for f in features] == trunk.out_channels == [64, 128, 256, 256, 256]


def test_ssd_trunk_costs_a_fraction_of_resnet18():
    def forward_flops(trunk):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            trunk.eval()(torch.randn(1, 3, 192, 192))
        return counter.get_total_flops()

    tiny = forward_flops(TinyResNetTrunk(5, 192))
    resnet18 = forward_flops(build_ssd_trunk("resnet18", 5, 192))
    assert tiny < resnet18 / 4


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="at least 3 feature maps"):
        build_ssd_trunk("tiny_resnet", 2, 192)
    with pytest.raises(ConfigError, match="model.pretrained.*tiny_resnet"):
        build_ssd_trunk("tiny_resnet", 5, 192, pretrained="weights.pth")
    with pytest.raises(ConfigError, match="too small"):
        build_ssd_trunk("tiny_resnet", 8, 64)


def test_uses_torchvision_basic_blocks():
    blocks = [m for m in tiny_resnet_stages().modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == 6
