"""torchvision's SSD300 VGG16 and SSDlite320 with our settings: the references for speed and accuracy
comparisons.

`torchvision_ssd300(num_classes, ssd_cfg, input_cfg)` builds torchvision.models.detection.SSD on
torchvision's SSD VGG16 feature extractor (random weights) with our default boxes (aspect ratios,
scales, steps), matching threshold, negative:positive ratio, postprocess settings, input size and
normalisation. Differences that remain are torchvision's own: it resizes and normalises inside the
model (so give it 0..1 images [3, H, W] in a list), clamps default boxes in cx, cy, w, h rather than
clipping corners, and loops over images (loss) and over images and classes (postprocess) in Python.

`torchvision_ssdlite320(num_classes, ssd_cfg, input_cfg)` is torchvision's own
`ssdlite320_mobilenet_v3_large` (random weights, so MobileNetV3's reduced tail, as ours from random
weights) with our postprocess and matching settings; its layout is ours for `model.arch: ssdlite`, so
our weights load into it (detect.models.weights.ssdlite_to_torchvision).
"""

from __future__ import annotations

import torchvision
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, _vgg_extractor
from torchvision.models.detection.ssdlite import ssdlite320_mobilenet_v3_large

from detect.config import InputConfig, SSDConfig
from detect.models.default_boxes import box_scales


def torchvision_ssd300(
    num_classes: int, ssd_cfg: SSDConfig | None = None, input_cfg: InputConfig | None = None
) -> SSD:
    """torchvision's SSD (VGG16, 6 maps) for `num_classes` foreground classes, with our settings."""
    ssd_cfg = ssd_cfg or SSDConfig()
    input_cfg = input_cfg or InputConfig(resize="fixed", size=300)
    num_maps = len(ssd_cfg.aspect_ratios)
    if num_maps != 6:
        raise ValueError(f"torchvision's VGG16 SSD extractor gives 6 feature maps (SSD300), not {num_maps}")
    backbone = _vgg_extractor(torchvision.models.vgg16(weights=None), highres=False, trainable_layers=5)
    anchor_generator = DefaultBoxGenerator(
        [[int(r) if float(r).is_integer() else r for r in ratios] for ratios in ssd_cfg.aspect_ratios],
        scales=box_scales(num_maps, ssd_cfg.min_scale, ssd_cfg.max_scale, ssd_cfg.first_scale),
        steps=ssd_cfg.steps,
    )
    return SSD(
        backbone,
        anchor_generator,
        (input_cfg.size, input_cfg.size),
        num_classes + 1,
        image_mean=list(input_cfg.mean),
        image_std=list(input_cfg.std),
        score_thresh=ssd_cfg.score_thresh,
        nms_thresh=ssd_cfg.nms_thresh,
        detections_per_img=ssd_cfg.detections_per_img,
        iou_thresh=ssd_cfg.iou_thresh,
        topk_candidates=ssd_cfg.top_k_per_class,
        positive_fraction=1.0 / (1.0 + ssd_cfg.neg_pos_ratio),
    )


def torchvision_ssdlite320(num_classes: int, ssd_cfg: SSDConfig, input_cfg: InputConfig) -> SSD:
    """torchvision's SSDlite320 MobileNetV3-Large for `num_classes` foreground classes, our settings."""
    return ssdlite320_mobilenet_v3_large(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        image_mean=list(input_cfg.mean),
        image_std=list(input_cfg.std),
        score_thresh=ssd_cfg.score_thresh,
        nms_thresh=ssd_cfg.nms_thresh,
        detections_per_img=ssd_cfg.detections_per_img,
        topk_candidates=ssd_cfg.top_k_per_class,
        iou_thresh=ssd_cfg.iou_thresh,
        positive_fraction=1.0 / (1.0 + ssd_cfg.neg_pos_ratio),
    )
