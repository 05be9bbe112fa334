"""Faster R-CNN end to end: the model contract, empty ground truth, configs, overfitting."""

from __future__ import annotations

import pytest
import torch

from detect.config import InputConfig, load_config, model_section
from detect.detections.padded import split_detections
from detect.errors import ConfigError
from detect.models.build import build_model
from tests.models.overfit_utils import mean_ap, shapes_batch

SMALL = {
    "backbone": "resnet18",
    "roi_pool": "roi_align",
    "roi_output_size": 4,
    "anchors": {"sizes": [24, 48, 96]},
    "rpn": {"batch_size_per_image": 64, "pre_nms_top_n_train": 300, "post_nms_top_n_train": 64,
            "pre_nms_top_n_test": 300, "post_nms_top_n_test": 20},
    "roi_heads": {"batch_size_per_image": 16, "positive_fraction": 0.5, "detections_per_img": 10},
}
LOSS_KEYS = {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"}


def _small_model(num_classes=2, **overrides):
    torch.manual_seed(0)
    return build_model(model_section({**SMALL, **overrides}), InputConfig(), num_classes)


def test_losses_with_an_image_without_ground_truth_and_backward():
    model = _small_model().train()
    images, targets = shapes_batch(2, 64)
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(images, torch.tensor([[64, 64], [48, 64]]), targets)
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_all_images_without_ground_truth():
    model = _small_model().train()
    images = torch.randn(2, 3, 64, 64)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model(images, torch.tensor([[64, 64]] * 2), empty)
    assert losses["loss_rpn_box"] == 0 and losses["loss_box_reg"] == 0
    assert torch.isfinite(sum(losses.values()))


def test_inference_outputs_and_postprocess_contract():
    model = _small_model().eval()
    images = torch.randn(2, 3, 64, 96)
    image_sizes = torch.tensor([[64, 96], [48, 80]])
    with torch.no_grad():
        outputs = model(images, image_sizes)
    assert outputs["class_logits"].shape == (2, 20, 3) and outputs["box_deltas"].shape == (2, 20, 2, 4)
    model.roi_heads.score_threshold = 0.0  # keep everything, so the cap is reached
    scales = torch.tensor([[0.5, 0.5], [2.0, 2.0]])
    detections = split_detections(model.postprocess(outputs, image_sizes, scales))
    assert len(detections) == 2
    for found, size, scale in zip(detections, image_sizes, scales):
        assert len(found["boxes"]) <= 10 and set(found) == {"boxes", "scores", "labels"}
        assert (found["scores"][1:] <= found["scores"][:-1]).all()
        original_h, original_w = (size / scale.flip(0)).tolist()
        assert (found["boxes"][:, 2] <= original_w + 1e-4).all() and (found["boxes"][:, 3] <= original_h + 1e-4).all()
    assert model.num_classes == 2


def test_vgg16_with_roi_pool_runs():
    model = _small_model(backbone="vgg16", roi_pool="roi_pool", roi_output_size=None,
                         roi_heads={"batch_size_per_image": 8, "representation_size": 64}).train()
    images, targets = shapes_batch(1, 64)
    losses = model(images, torch.tensor([[64, 64]]), targets)
    assert set(losses) == LOSS_KEYS and model.roi_heads.output_size == 7


def test_shipped_configs_build_their_settings():
    voc = load_config("voc_faster_rcnn").model
    settings = (voc.backbone, voc.roi_pool, voc.roi_heads.nms_thresh, voc.rpn.pre_nms_top_n_train)
    assert settings == ("vgg16", "roi_pool", 0.3, 12000)
    resnet = load_config("voc_faster_rcnn_resnet50").model
    assert (resnet.backbone, resnet.roi_pool, resnet.trainable_layers) == ("resnet50", "roi_align", 3)
    synthetic = load_config("synthetic_faster_rcnn")
    model = build_model(synthetic.model, synthetic.input, 3)
    assert model.roi_heads.output_size == 7 and model.rpn.anchor_generator.num_anchors == 12
    assert voc.roi_heads.detections_per_img == 100 and voc.roi_heads.box_weights == (10.0, 10.0, 5.0, 5.0)


def test_bad_class_count():
    with pytest.raises(ConfigError):
        build_model(model_section(SMALL), InputConfig(), 0)


def _overfit(steps: int, eval_every: int, target: float, lr: float = 1e-3, **model_overrides) -> float:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    images, targets = shapes_batch(4, 128)
    model = _small_model(**{"trainable_layers": 5, **model_overrides})
    sizes, scales = torch.tensor([[128, 128]] * 4), torch.ones(4, 2)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    best = 0.0
    for step in range(1, steps + 1):
        model.train()
        loss = sum(model(images, sizes, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                detections = split_detections(model.postprocess(model(images, sizes), sizes, scales))
            best = max(best, mean_ap(detections, targets, num_classes=2))
            if best >= target:
                break
    return best


@pytest.mark.slow
def test_overfits_four_images_to_high_map():
    # About 30-70 steps of ~1.5 s on 2 free CPU cores; slow because it exceeds the default run's budget.
    assert _overfit(steps=150, eval_every=10, target=0.9) >= 0.9


def test_tiny_resnet_overfits_four_images():
    """The CPU main job's backbone: narrow trunk and a two-layer fc head on 7 x 7 RoIs."""
    assert _overfit(steps=200, eval_every=10, target=0.9, lr=2e-3, backbone="tiny_resnet", roi_output_size=7,
                    trainable_layers=None) >= 0.9


def test_tiny_resnet_head_follows_the_roi_size():
    model = _small_model(backbone="tiny_resnet", trainable_layers=None)  # SMALL pools 4 x 4 RoIs
    assert model.roi_heads.output_size == 4 and model.roi_heads.box_head[1].in_features == 128 * 4 * 4


def test_a_few_training_steps_reduce_the_loss():
    """The default run's fast stand-in for the overfit test."""
    torch.manual_seed(0)
    images, targets = shapes_batch(2, 64, seed=1)
    model = _small_model(anchors={"sizes": [16, 32, 64]}).train()
    sizes = torch.tensor([[64, 64]] * 2)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(12):
        torch.manual_seed(1)  # the same samples every step: the loss is comparable from step to step
        loss = sum(model(images, sizes, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert min(history[-3:]) < 0.75 * history[0], history


def test_bf16_autocast_and_a_single_copy_of_the_head():
    model = _small_model().train()
    assert not any(key.startswith("backbone.head.") for key in model.state_dict())
    assert any(key.startswith("roi_heads.box_head.") for key in model.state_dict())
    images, targets = shapes_batch(2, 64)
    sizes = torch.tensor([[64, 64]] * 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, sizes, targets)
        model.eval()
        outputs = model(images, sizes)
    assert all(torch.isfinite(v) for v in losses.values())
    assert outputs["rois"].dtype == torch.float32  # proposals stay in float32 pixels
    detections = split_detections(model.postprocess(outputs, sizes, torch.ones(2, 2)))
    assert all(d["boxes"].dtype == torch.float32 for d in detections)


def test_vgg_heads_identity_pool_is_skipped_and_its_fc_layers_run_on_onednn():
    from torch import nn

    from detect.models.backbones import build_backbone
    from detect.models.faster_rcnn import skip_identity_pool
    from detect.models.linear import OneDNNLinear

    model = _small_model(backbone="vgg16", roi_pool="roi_pool", roi_output_size=None,
                         roi_heads={"representation_size": 64})
    head = model.roi_heads.box_head
    assert isinstance(head[0], nn.Identity)
    assert [type(m) for m in head if isinstance(m, nn.Linear)] == [OneDNNLinear] * 2
    assert type(model.roi_heads.cls_score) is OneDNNLinear and type(model.roi_heads.bbox_pred) is OneDNNLinear
    reference = build_backbone("vgg16").head  # the pool stays where it does something: 14 x 14 RoIs
    skip_identity_pool(reference, 14)
    assert isinstance(reference[0], nn.AdaptiveAvgPool2d)
    with torch.no_grad():
        pooled = torch.randn(3, 512, 7, 7)
        expected = reference[2](reference[1](reference[0](pooled)))  # pool, flatten, fc6
        skip_identity_pool(reference, 7)
        assert isinstance(reference[0], nn.Identity)
        torch.testing.assert_close(reference[2](reference[1](reference[0](pooled))), expected, rtol=0, atol=0)
