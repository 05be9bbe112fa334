"""What the training loop functions share: one `TrainSession` (model, optimiser, schedule, state).

    session = make_session(config, model, class_names, device, steps_per_epoch, run_dir, logger)
        session.model    what runs the step (maybe DDP or compiled)
        session.module   the plain model whose weights are saved
        session.state    the TrainState that checkpoints hold (detect.engine.train_state saves and restores it)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from detect.config import Config
from detect.data.skip_report import SkipReport
from detect.device import autocast_context
from detect.engine import distributed as dist_utils
from detect.engine.ema import ModelEMA
from detect.engine.logger import RunLogger
from detect.engine.optim import build_optimizer, build_scheduler


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps done
    batch_in_epoch: int = 0  # batches of the current (interrupted) epoch already trained
    best_metric: float | None = None
    best_epoch: int | None = None  # the epoch of best_metric (early stopping counts from it)
    nonfinite_skipped: int = 0
    # The epoch's training is done, its evaluation and checkpoints are not: a run interrupted then
    # does them first on resume (instead of finishing with no evaluation and no best.pt).
    epoch_end_due: bool = False


@dataclass
class TrainSession:
    """Everything the loop functions share. `model` is what runs the step (maybe DDP or compiled);
    `module` the plain model whose weights are saved."""

    config: Config
    class_names: list[str]
    module: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    ema: ModelEMA | None = None
    logger: RunLogger = field(default_factory=lambda: RunLogger(None))
    run_dir: Path | None = None
    state: TrainState = field(default_factory=TrainState)
    resume_rng: dict | None = None  # RNG states to restore after skipping the trained batches
    # COCO data: the category id of each label (label i is category_ids[i - 1]), kept in checkpoints
    # so that inference writes COCO results with the dataset's own ids.
    category_ids: list[int] | None = None
    # Buffers (BatchNorm statistics) and RNG states as they were after the last optimiser step: a
    # Ctrl-C between steps saves these, so the batches replayed on resume start from the same state.
    boundary_buffers: list[torch.Tensor] | None = None
    boundary_rng: dict | None = None
    # What data.on_error: skip left out, reported to train.log and metrics.jsonl as it is found.
    skip_report: SkipReport = field(default_factory=SkipReport)
    steps_per_epoch: int = 1  # optimiser steps in an epoch (the schedule is in epochs)
    # train.time_minutes: what fits the schedule to the budget (detect.engine.time_budget), or None
    budget: object | None = None

    def autocast(self):
        return autocast_context(self.config, self.device)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.module


def make_scaler(config: Config, device: torch.device) -> torch.amp.GradScaler | None:
    if device.type == "cuda" and config.train.amp and config.train.amp_dtype == "fp16":
        return torch.amp.GradScaler("cuda")
    return None


def make_session(config: Config, model: nn.Module, class_names: Sequence[str], device: torch.device,
                 steps_per_epoch: int, run_dir: Path | None = None, logger: RunLogger | None = None) -> TrainSession:
    """Wraps a freshly built model: device, channels_last, SyncBN, DDP, compile; optimiser, schedule."""
    train_cfg = config.train
    model = model.to(device)
    if train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if train_cfg.sync_bn and dist_utils.is_distributed():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    module = model
    optimizer = build_optimizer(module, train_cfg, dist_utils.world_size())
    scheduler = build_scheduler(optimizer, train_cfg, steps_per_epoch)
    ema = ModelEMA(module, train_cfg.ema_decay) if train_cfg.ema else None
    runner: nn.Module = module
    if dist_utils.is_distributed():
        device_ids = [device.index] if device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
    if train_cfg.compile:
        runner = torch.compile(runner)
    return TrainSession(
        config=config, class_names=list(class_names), module=module, model=runner, optimizer=optimizer,
        scheduler=scheduler, device=device, scaler=make_scaler(config, device), ema=ema,
        logger=logger or RunLogger(None), run_dir=run_dir, steps_per_epoch=max(1, steps_per_epoch),
    )
