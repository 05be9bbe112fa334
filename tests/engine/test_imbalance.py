"""Class weights of the classification loss (train.class_weights) and the focal loss of the SSD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detect.data.dataset import Sample
from detect.engine.imbalance import class_weights
from detect.errors import ConfigError
from detect.models.roi_heads import fast_rcnn_losses
from detect.models.ssd_loss import MultiBoxLoss, focal_loss


def samples_with(labels_per_image):
    return [Sample(None, "", i, np.zeros((len(labels), 4), np.float32), np.array(labels, np.int64),
                   np.zeros(len(labels), bool), np.zeros(len(labels), bool))
            for i, labels in enumerate(labels_per_image)]


def test_auto_weights_are_inverse_square_root_counts_with_mean_one():
    samples = samples_with([[1] * 100, [2] * 25, [1, 3]])  # counts 101, 25, 1
    weights = class_weights("auto", samples, ["a", "b", "c"])
    raw = 1 / np.sqrt([101, 25, 1])
    np.testing.assert_allclose(weights.numpy(), [1.0, *(raw / raw.mean())], rtol=1e-6)
    assert class_weights("none", samples, ["a", "b", "c"]) is None
    assert class_weights([1, 2, 0.5], samples, ["a", "b", "c"]).tolist() == [1.0, 1.0, 2.0, 0.5]
    with pytest.raises(ConfigError, match="2 weights for 3 classes"):
        class_weights([1, 2], samples, ["a", "b", "c"])


def test_a_weight_of_zero_removes_a_class_from_the_ssd_classification_loss():
    torch.manual_seed(0)
    priors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 30, 10, 40]], dtype=torch.float32)
    targets = [{"boxes": torch.tensor([[0, 0, 10, 10.0], [20, 20, 30, 30.0]]), "labels": torch.tensor([1, 2])}]
    logits, regression = torch.randn(1, 4, 3), torch.randn(1, 4, 4)
    loss = MultiBoxLoss(neg_pos_ratio=1.0)
    plain = loss(logits, regression, priors, targets)["loss_cls"]
    loss.class_weights = torch.tensor([1.0, 1.0, 0.0])
    weighted = loss(logits, regression, priors, targets)["loss_cls"]
    ce = F.cross_entropy(logits[0], torch.tensor([1, 2, 0, 0]), reduction="none")
    assert weighted == pytest.approx((plain * 2 - ce[1]).item() / 2, rel=1e-5)


def test_the_focal_loss_down_weights_easy_boxes():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1])
    ce = F.cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(focal_loss(logits, labels, ce, gamma=0.0, alpha=0.5), 0.5 * ce, rtol=1e-6)
    focal = focal_loss(logits, labels, ce, gamma=2.0, alpha=0.25)
    assert focal[0] / ce[0] < 0.001 and focal[1] / ce[1] == pytest.approx(0.75 * 0.25)  # easy vs. unsure


def test_fast_rcnn_weights_of_one_change_nothing():
    torch.manual_seed(0)
    args = (torch.randn(2, 5, 4), torch.randn(2, 5, 3, 4), torch.ones(2, 5, dtype=torch.bool),
            torch.randint(0, 4, (2, 5)), torch.randn(2, 5, 4))
    plain = fast_rcnn_losses(*args)
    ones = fast_rcnn_losses(*args, class_weights=torch.ones(4))
    torch.testing.assert_close(plain["loss_classifier"], ones["loss_classifier"])
    doubled = fast_rcnn_losses(*args, class_weights=torch.full((4,), 2.0))
    torch.testing.assert_close(doubled["loss_classifier"], 2 * plain["loss_classifier"])


def test_a_run_with_every_imbalance_option_trains_and_says_what_it_does(tmp_path, capsys):
    from tests.engine.test_eval_checks import TINY, run, sets

    run_dir = tmp_path / "run"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *sets(f"data.root={tmp_path / 'shapes'}", *TINY, "data.repeat_factor_threshold=1.0",
                              "train.class_weights=auto", "model.ssd.cls_loss=focal")], capsys)
    assert code == 0, err
    log = (run_dir / "train.log").read_text()
    assert "class weights of the classification loss: circle" in log
    assert "repeat-factor sampling (threshold 1): " in log and "draws an epoch from 6 images" in log
