"""Optimiser parameter groups and the per-iteration learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detect.config import TrainConfig
from detect.engine.optim import build_optimizer, build_scheduler, is_backbone_parameter, lr_factor
from tests.engine.doubles import TinyDetector


def groups_by_name(optimizer):
    return {group["name"]: group for group in optimizer.param_groups}


def test_no_decay_on_norms_and_biases_and_backbone_lr_multiplier():
    model = TinyDetector(2)
    model.backbone[1].weight.requires_grad_(False)  # frozen parameters are left out
    cfg = TrainConfig(lr=0.1, weight_decay=1e-4, backbone_lr_mult=0.5, optimizer="sgd", nesterov=True)
    groups = groups_by_name(build_optimizer(model, cfg))
    assert groups["backbone"]["lr"] == pytest.approx(0.05) and groups["backbone"]["weight_decay"] == 1e-4
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert groups["heads"]["lr"] == pytest.approx(0.1) and groups["heads_no_decay"]["weight_decay"] == 0.0
    backbone_no_decay = {id(p) for p in groups["backbone_no_decay"]["params"]}
    assert id(model.backbone[1].bias) in backbone_no_decay and id(model.backbone[0].bias) in backbone_no_decay
    all_params = [p for g in groups.values() for p in g["params"]]
    assert id(model.backbone[1].weight) not in {id(p) for p in all_params}
    assert len(all_params) == sum(1 for p in model.parameters() if p.requires_grad)
    decayed = groups_by_name(build_optimizer(model, cfg.model_copy(update={"decay_norm_and_bias": True})))
    assert set(decayed) == {"backbone", "heads"}


@pytest.mark.parametrize(
    "name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizer_kinds(name, cls):
    assert isinstance(build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer=name)), cls)


def test_backbone_names_follow_the_models():
    assert is_backbone_parameter("backbone.trunk.layer1.0.conv1.weight")  # Faster R-CNN
    assert is_backbone_parameter("trunk.extras.0.weight")  # SSD
    assert not is_backbone_parameter("roi_heads.box_predictor.weight")
    assert not is_backbone_parameter("head.trunked.weight")


def test_warmup_then_multistep_in_epochs():
    cfg = TrainConfig(warmup_iters=10, warmup_factor=0.1, scheduler="multistep", milestones=[2, 3], gamma=0.1)
    assert lr_factor(0, cfg, 10) == pytest.approx(0.1)
    assert lr_factor(5, cfg, 10) == pytest.approx(0.55)
    assert lr_factor(10, cfg, 10) == pytest.approx(1.0)
    assert lr_factor(19, cfg, 10) == pytest.approx(1.0)
    assert lr_factor(20, cfg, 10) == pytest.approx(0.1)
    assert lr_factor(30, cfg, 10) == pytest.approx(0.01)


def test_step_cosine_constant():
    step = TrainConfig(warmup_iters=0, scheduler="step", step_size=2, gamma=0.5)
    assert [lr_factor(s, step, 5) for s in (0, 9, 10, 20)] == pytest.approx([1, 1, 0.5, 0.25])
    cosine = TrainConfig(warmup_iters=0, scheduler="cosine", epochs=2, min_lr_ratio=0.1)
    assert lr_factor(0, cosine, 10) == pytest.approx(1.0)
    assert lr_factor(10, cosine, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(20, cosine, 10) == pytest.approx(0.1)
    assert lr_factor(5, TrainConfig(warmup_iters=0, scheduler="constant"), 10) == 1.0


def test_scheduler_steps_per_iteration():
    model = nn.Linear(2, 2)
    cfg = TrainConfig(lr=1.0, warmup_iters=4, warmup_factor=0.0 + 1e-3, scheduler="cosine", epochs=1)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=8)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [lr_factor(s, cfg, 8) for s in range(8)]
    assert lrs == pytest.approx(expected)
    assert lrs[4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))


def test_the_learning_rate_follows_the_total_batch():
    from detect.config import load_config
    from detect.engine.optim import effective_lr
    from detect.engine.run import lr_message

    train_cfg = load_config("voc_faster_rcnn").train  # lr 0.01 for a batch of 8
    assert effective_lr(train_cfg) == pytest.approx(train_cfg.lr)
    assert effective_lr(train_cfg, world_size=4) == pytest.approx(4 * train_cfg.lr)
    doubled = train_cfg.model_copy(update={"batch_size": 8, "accumulate": 2})
    assert effective_lr(doubled, world_size=2) == pytest.approx(4 * train_cfg.lr)
    assert "total batch of 32 (8 x 2 accumulated x 2 processes)" in lr_message(doubled, 2)
    fixed = doubled.model_copy(update={"scale_lr": False})
    assert effective_lr(fixed, world_size=2) == train_cfg.lr and "scale_lr: false" in lr_message(fixed, 2)
    default_base = train_cfg.model_copy(update={"base_batch_size": None, "batch_size": 3})
    assert effective_lr(default_base, world_size=2) == pytest.approx(2 * train_cfg.lr)  # one process's batch


def test_the_optimizer_starts_at_the_scaled_rate():
    from detect.config import load_config
    from detect.engine.optim import build_optimizer

    train_cfg = load_config("synthetic_ssd", ["train.batch_size=4"]).train  # lr 0.01 for 8: half
    model = torch.nn.Linear(2, 2)
    assert [group["lr"] for group in build_optimizer(model, train_cfg).param_groups] == pytest.approx([0.005] * 2)


def test_warmup_takes_at_most_a_tenth_of_a_short_run():
    from detect.engine.run import warmup_message

    short = TrainConfig(epochs=2, warmup_iters=100, warmup_factor=0.001, scheduler="constant")
    assert [round(lr_factor(step, short, 15), 4) for step in (0, 1, 2, 3, 29)] == [0.001, 0.334, 0.667, 1.0, 1.0]
    assert warmup_message(short, 15) == ("warmup: 3 steps, not train.warmup_iters 100: warmup takes at most 10% of "
                                         "the run's 30 steps")
    long = short.model_copy(update={"epochs": 100})
    assert lr_factor(99, long, 15) < 1.0 and lr_factor(100, long, 15) == 1.0
    assert warmup_message(long, 15) is None
    assert lr_factor(0, short.model_copy(update={"warmup_iters": 0}), 15) == 1.0
