"""Optimiser and per-iteration learning-rate schedule from the `train` config section.

Parameter groups. Weight decay is not applied to normalization weights and biases (any parameter
with fewer than 2 dimensions) unless `train.decay_norm_and_bias`. The backbone learning rate is
`lr * train.backbone_lr_mult`; a parameter belongs to the backbone when one of the components of its
dotted name is `backbone` or `trunk` (Faster R-CNN: `backbone.trunk.*`, `backbone.head.*`; SSD:
`trunk.*`). Frozen parameters (requires_grad False) are left out.

The schedule is a LambdaLR stepped once per optimiser step: linear warmup from `warmup_factor` to 1
over `warmup_iters` steps (at most a tenth of the run: `warmup_steps`), multiplied by the decay
(multistep/step with milestones in epochs, cosine down to `min_lr_ratio`, or constant).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from detect.config import TrainConfig

BACKBONE_NAMES = ("backbone", "trunk")


def is_backbone_parameter(name: str) -> bool:
    return any(part in BACKBONE_NAMES for part in name.split("."))


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, decay_norm_and_bias: bool,
                     backbone_lr_mult: float) -> list[dict]:
    """Up to four groups: (backbone or not) x (decayed or not); empty groups are dropped."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decayed = decay_norm_and_bias or param.ndim > 1
        groups.setdefault((is_backbone_parameter(name), decayed), []).append(param)
    result = []
    for (in_backbone, decayed), params in sorted(groups.items()):
        result.append({
            "params": params,
            "lr": lr * (backbone_lr_mult if in_backbone else 1.0),
            "weight_decay": weight_decay if decayed else 0.0,
            "name": f"{'backbone' if in_backbone else 'heads'}{'' if decayed else '_no_decay'}",
        })
    return result


def batch_sizes(train_cfg: TrainConfig, world_size: int = 1) -> tuple[int, int]:
    """(total batch: images per optimiser step over all processes, the base batch train.lr is for)."""
    per_process = train_cfg.batch_size * train_cfg.accumulate
    return per_process * world_size, train_cfg.base_batch_size or per_process


def effective_lr(train_cfg: TrainConfig, world_size: int = 1) -> float:
    """train.lr scaled to the total batch (train.scale_lr, train.base_batch_size)."""
    total, base = batch_sizes(train_cfg, world_size)
    return train_cfg.lr * total / base if train_cfg.scale_lr else train_cfg.lr


def build_optimizer(model: nn.Module, train_cfg: TrainConfig, world_size: int = 1) -> torch.optim.Optimizer:
    lr = effective_lr(train_cfg, world_size)
    groups = parameter_groups(model, lr, train_cfg.weight_decay, train_cfg.decay_norm_and_bias,
                              train_cfg.backbone_lr_mult)
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train_cfg.momentum,
                               nesterov=train_cfg.nesterov and train_cfg.momentum > 0)
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


# Warmup takes at most this share of a run's steps: a short run (two epochs of 15 steps, say) asking for
# the 100 to 1,000 steps written for VOC-sized runs would otherwise end before it leaves warmup.
MAX_WARMUP_SHARE = 0.1


def warmup_steps(train_cfg: TrainConfig, steps_per_epoch: int) -> int:
    """train.warmup_iters, capped at MAX_WARMUP_SHARE of the run's optimiser steps."""
    total = max(1, train_cfg.epochs * max(1, steps_per_epoch))
    return min(train_cfg.warmup_iters, max(1, math.ceil(MAX_WARMUP_SHARE * total)))


def lr_factor(step: int, train_cfg: TrainConfig, steps_per_epoch: int) -> float:
    """The multiplier of the base learning rate after `step` optimiser steps."""
    warmup = 1.0
    warmup_iters = warmup_steps(train_cfg, steps_per_epoch) if train_cfg.warmup_iters else 0
    if step < warmup_iters:
        alpha = step / warmup_iters
        warmup = train_cfg.warmup_factor * (1 - alpha) + alpha
    if train_cfg.scheduler == "multistep":
        passed = sum(step >= milestone * steps_per_epoch for milestone in train_cfg.milestones)
        decay = train_cfg.gamma ** passed
    elif train_cfg.scheduler == "step":
        decay = train_cfg.gamma ** (step // (train_cfg.step_size * steps_per_epoch))
    elif train_cfg.scheduler == "cosine":
        total = max(1, train_cfg.epochs * steps_per_epoch)
        progress = min(step, total) / total
        floor = train_cfg.min_lr_ratio
        decay = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        decay = 1.0
    return warmup * decay


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped after every optimiser step; its `last_epoch` is the step count (saved in checkpoints)."""
    steps_per_epoch = max(1, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, train_cfg, steps_per_epoch)
    )
