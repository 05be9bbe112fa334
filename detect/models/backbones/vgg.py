"""VGG16 (Simonyan and Zisserman, 2015) for both detector families.

Faster R-CNN, `vgg16` and `vgg16_bn`: conv1_1..conv5_3 (the last max pool dropped) as the stride-16
trunk (512 channels); fc6, fc7 as the per-RoI head (4096 wide, after an adaptive pool to 7 x 7, which is
the identity for 7 x 7 RoIs, as in torchvision's VGG). Stages for `trainable_layers`: the five conv blocks
(the fc6/fc7 head always trains).

SSD, `vgg16` (Liu et al., 2016): conv1_1..conv5_3 with pool3 rounding up (so 300 px gives 38 x 38) and
pool5 made 3 x 3 stride 1; fc6 becomes a 3 x 3 convolution with dilation 6 and fc7 a 1 x 1
convolution, both 1024 wide; with ImageNet weights their kernels are subsampled from fc6/fc7 (every
4th unit; every 3rd of fc6's 7 x 7 positions, which the dilation compensates). The maps are conv4_3
(after a learned L2 normalization, scale initialised to 20), fc7, then the extra layers: the paper's
SSD300 layers for 6 maps, SSD512's for 7.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from detect.errors import ConfigError
from detect.models.backbones.base import Backbone
from detect.models.backbones.freezing import freeze, freeze_below, frozen_batchnorm, trainable_stage_count
from detect.models.backbones.registry import register_backbone
from detect.models.backbones.ssd_layers import TrunkWithExtras, conv_out, extra_block, size_driven_extras, xavier_init
from detect.models.backbones.weight_files import classifier_model, load_classifier_weights, uses_frozen_batchnorm

VGG_STAGES = 5

# ---------------------------------------------------------------------------------------------------
# Faster R-CNN


def _vgg_stages(features: nn.Sequential) -> list[nn.Sequential]:
    """The five conv blocks of VGG's `features`, each ending with its max pool."""
    stages, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    return stages


def build_vgg(name: str, pretrained: str, trainable_layers: int | None) -> Backbone:
    trainable = trainable_stage_count(name, trainable_layers, VGG_STAGES, pretrained)
    model = classifier_model(name, pretrained)
    if uses_frozen_batchnorm(pretrained):
        model = frozen_batchnorm(model)
    stages = _vgg_stages(model.features)
    stages[-1] = stages[-1][:-1]  # conv5_3 at stride 16: pool5 dropped
    freeze_below(stages, trainable)
    trunk = nn.Sequential(*[layer for stage in stages for layer in stage])
    # fc6, relu, dropout, fc7, relu, dropout: fc8 (the 1000-way classifier) is dropped.
    head = nn.Sequential(nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1), *model.classifier[:-1])
    fc7 = model.classifier[3]
    return Backbone(trunk, head, out_channels=512, head_out_channels=fc7.out_features, roi_output_size=7)



# ---------------------------------------------------------------------------------------------------
# SSD

# (middle channels, out channels, kernel, stride, padding) of each extra layer pair (1x1, then kxk).
# From the SSD paper's Caffe models: SSD300's conv8_2..conv11_2 and SSD512's conv8_2..conv12_2.
VGG_EXTRAS = {
    4: [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)],
    5: [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1)],
}

VGG_POOL_INDICES = (4, 9, 16, 23, 30)  # max pools in torchvision's vgg16().features

VGG_CONV4_3_END = 23  # features[:23] ends with conv4_3's ReLU

L2NORM_SCALE = 20.0



class L2Norm(nn.Module):
    """Per-position L2 normalization over channels with a learned per-channel scale (ParseNet)."""

    def __init__(self, channels: int, scale: float = L2NORM_SCALE, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.float().pow(2).sum(dim=1, keepdim=True).sqrt().add(self.eps)
        return (x.float() / norm * self.weight.view(1, -1, 1, 1)).to(x.dtype)



class VGGTrunk(TrunkWithExtras):
    """SSD's VGG16: conv4_3 (L2-normalized), fc7, and the extra layers."""

    def __init__(self, num_maps: int, input_size: int, pretrained: str = "none", trainable_layers: int | None = None):
        super().__init__()
        if num_maps < 2:
            raise ConfigError(f"model.ssd: VGG16 SSD needs at least 2 feature maps (conv4_3, fc7), got {num_maps}")
        vgg = load_classifier_weights(torchvision.models.vgg16(weights=None), "vgg16", pretrained)
        features = vgg.features
        features[VGG_POOL_INDICES[2]].ceil_mode = True  # 75 -> 38 at 300 px, as Caffe rounds
        features[VGG_POOL_INDICES[4]] = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        fc6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
        fc7 = nn.Conv2d(1024, 1024, kernel_size=1)
        if pretrained == "none":
            xavier_init(nn.ModuleList([fc6, fc7]))
        else:
            _subsample_fc_weights(vgg.classifier, fc6, fc7)
        self.conv4_3 = features[:VGG_CONV4_3_END]
        self.l2norm = L2Norm(512)
        self.fc7 = nn.Sequential(*features[VGG_CONV4_3_END:], fc6, nn.ReLU(inplace=True), fc7, nn.ReLU(inplace=True))
        fc7_size = self._trunk_sizes(input_size)[1]
        specs = VGG_EXTRAS.get(num_maps - 2) or size_driven_extras(fc7_size, num_maps - 2)
        self.extras = nn.ModuleList()
        in_channels = 1024
        for spec in specs:
            self.extras.append(extra_block(in_channels, *spec, norm=False))
            in_channels = spec[1]
        xavier_init(self.extras)
        self.specs = specs
        self.out_channels = [512, 1024] + [spec[1] for spec in specs]

        blocks = [range(0, 5), range(5, 10), range(10, 17), range(17, 24), range(24, 31)]
        trainable = trainable_stage_count("vgg16", trainable_layers, len(blocks), pretrained)
        freeze([features[i] for block in blocks[: len(blocks) - trainable] for i in block])

    @staticmethod
    def _trunk_sizes(input_size: int) -> list[int]:
        """conv4_3 and fc7 sizes: pools 1, 2 round down, pool 3 up, pool 4 down, pool 5 keeps the size."""
        size = conv_out(conv_out(conv_out(input_size, 2, 2, 0), 2, 2, 0), 2, 2, 0, ceil=True)
        return [size, conv_out(size, 2, 2, 0)]

    def _base_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        conv4_3 = self.conv4_3(images)
        return [self.l2norm(conv4_3), self.fc7(conv4_3)]



def _subsample_fc_weights(classifier: nn.Sequential, fc6: nn.Conv2d, fc7: nn.Conv2d) -> None:
    """fc6 (4096 x 512*7*7) and fc7 (4096 x 4096) -> the 1024-wide convolutions, by decimation."""
    fc6_linear, fc7_linear = classifier[0], classifier[3]
    with torch.no_grad():
        fc6.weight.copy_(fc6_linear.weight.view(4096, 512, 7, 7)[::4, :, ::3, ::3])
        fc6.bias.copy_(fc6_linear.bias[::4])
        fc7.weight.copy_(fc7_linear.weight.view(4096, 4096, 1, 1)[::4, ::4])
        fc7.bias.copy_(fc7_linear.bias[::4])



def build_vgg_ssd_trunk(name: str, num_maps: int, input_size: int, pretrained: str, trainable_layers: int | None,
                        reduced_tail: bool | None) -> VGGTrunk:
    return VGGTrunk(num_maps, input_size, pretrained, trainable_layers)


register_backbone("vgg16", two_stage=build_vgg, ssd=build_vgg_ssd_trunk)
register_backbone("vgg16_bn", two_stage=build_vgg)
