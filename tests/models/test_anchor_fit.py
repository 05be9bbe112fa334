"""The reference boxes `detect data stats` measures are the ones training matches against: the RPN's
anchors and SSD's default boxes of a real forward pass, for inputs of several shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detect.config import load_config
from detect.models.anchor_fit import anchor_fit, reference_model
from detect.models.build import build_model

SHAPES = [(64, 64), (96, 160), (160, 96)]


@pytest.mark.parametrize("config_name", ["synthetic_faster_rcnn", "synthetic_ssd", "voc_faster_rcnn_mobilenet"])
def test_reference_boxes_are_the_boxes_of_a_forward_pass(config_name):
    cfg = load_config(config_name, ["model.pretrained=none"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.input, 3).eval()
    shapes_only = reference_model(cfg.model, cfg.input, 3)
    assert next(shapes_only.parameters()).device.type == "meta"
    for height, width in SHAPES if cfg.input.resize == "keep_ratio" else [(cfg.input.size, cfg.input.size)]:
        images = torch.zeros(1, 3, height, width)
        with torch.no_grad():
            if cfg.model.arch == "faster_rcnn":
                features = model.backbone(images)
                expected = model.rpn.anchors(features if isinstance(features, (list, tuple)) else [features])[0]
                match_iou = cfg.model.rpn.fg_iou_thresh
            else:
                expected = model(images, torch.tensor([[height, width]]))["priors"]
                match_iou = cfg.model.ssd.iou_thresh
        boxes, iou = shapes_only.reference_boxes(height, width)
        assert iou == match_iou
        torch.testing.assert_close(boxes, expected)


def test_a_box_that_is_an_anchor_fits_exactly_and_misses_are_measured_by_scale():
    cfg = load_config("synthetic_faster_rcnn")
    anchors, _ = reference_model(cfg.model, cfg.input, 1).reference_boxes(256, 256)
    inside = anchors[(anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= 256) & (anchors[:, 3] <= 256)]
    exact = inside[:3].numpy()
    tiny = np.array([[100, 100, 103, 103]], np.float32)  # 3 px: far below the smallest anchor (24)
    huge = np.array([[0, 0, 256, 256]], np.float32)  # larger than the 192 px anchors, though not far
    fit = anchor_fit(cfg.model, cfg.input, [exact, tiny, huge], [(256, 256)] * 3)
    np.testing.assert_allclose(fit.best_iou[:3], 1.0, atol=1e-6)
    assert fit.reached.tolist() == [True, True, True, False, fit.best_iou[4] >= 0.7]
    assert fit.scale_ratio[3] < 0.2 and fit.scale_ratio[4] > 1.0
    assert fit.kind == "RPN anchors" and "model.anchors.sizes" in fit.keys
