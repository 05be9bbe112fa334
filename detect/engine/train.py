"""The training loop: plain functions around one `TrainSession` (model, optimiser, schedule, state).

    run_training(config, output_dir=None, device="auto", resume=None) -> run folder
        builds data, model, optimiser from the config, resumes if asked, calls `fit`.
    fit(session, train_loader, val_loader)   epochs of `train_one_epoch`, evaluation, checkpoints
    train_one_epoch(session, loader)         one pass over the loader

The run folder holds config.yaml, train.log, metrics.jsonl, TensorBoard events, last.pt (every
epoch, and on Ctrl-C) and best.pt (best validation mAP). See checkpoint.py for what a checkpoint holds.

Exactness of resume: every epoch's data order and augmentation are reseeded from `train.seed + epoch`
just before the epoch's iterator is made (`seed_epoch`), so a run resumed mid-epoch replays the same
batches, skips those already trained, then restores the RNG states saved at the interruption. (With
`data.persistent_workers` the workers keep their first epoch's seeds, so augmentation after a resume
is equally random but not bit-identical.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detect.config import Config, config_to_dict, config_to_yaml
from detect.data.dataset import skipped_in
from detect.data.normalise import batch_to_device
from detect.engine import distributed as dist_utils
from detect.engine.checkpoint import (check_finite_weights, load_checkpoint, nonfinite_tensors, restore_rng_states,
                                     rng_states, save_checkpoint)
from detect.engine.device import autocast_context, resolve_device
from detect.engine.ema import ModelEMA
from detect.engine.evaluate import evaluate, headline_map, run_detector
from detect.engine.logger import RunLogger
from detect.engine.optim import build_optimizer, build_scheduler
from detect.engine.skip_report import SkipReport, dataset_errors
from detect.errors import CheckpointError, DetectError


class NonFiniteLossError(DetectError):
    """The loss became NaN or infinite (train.nonfinite: stop)."""


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps done
    batch_in_epoch: int = 0  # batches of the current (interrupted) epoch already trained
    best_metric: float | None = None
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
    # Test hook: behave as Ctrl-C once this many optimiser steps are done.
    interrupt_after_steps: int | None = None
    # Buffers (BatchNorm statistics) and RNG states as they were after the last optimiser step: a
    # Ctrl-C between steps saves these, so the batches replayed on resume start from the same state.
    boundary_buffers: list[torch.Tensor] | None = None
    boundary_rng: dict | None = None
    # What data.on_error: skip left out, reported to train.log and metrics.jsonl as it is found.
    skip_report: SkipReport = field(default_factory=SkipReport)

    def autocast(self):
        return autocast_context(self.config, self.device)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.module


# ---------------------------------------------------------------------------------------------------
# Set-up helpers


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_scaler(config: Config, device: torch.device) -> torch.amp.GradScaler | None:
    if device.type == "cuda" and config.train.amp and config.train.amp_dtype == "fp16":
        return torch.amp.GradScaler("cuda")
    return None


def new_run_dir(config: Config, output_dir: str | Path | None) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.train.output_dir) / config.name / stamp


def find_resume_checkpoint(config: Config, resume: str, output_dir: str | Path | None) -> Path:
    """`auto`: the newest checkpoint of --output-dir, else of the newest run folder of this config;
    else a path.

    The newest of last.pt and best.pt: both hold the whole training state, and best.pt is written
    just before last.pt, so a kill while last.pt is written (the run's first one included) keeps
    that epoch in best.pt."""
    if resume != "auto":
        return Path(resume)
    if output_dir is not None:
        found = [p for p in (Path(output_dir) / "last.pt", Path(output_dir) / "best.pt") if p.is_file()]
        if not found:
            raise DetectError(f"--resume auto: no last.pt in {output_dir}")
        return max(found, key=lambda p: p.stat().st_mtime)
    config_runs = Path(config.train.output_dir) / config.name
    runs = [p for name in ("last.pt", "best.pt") for p in config_runs.glob(f"*/{name}")] if config_runs.is_dir() else []
    if not runs:
        raise DetectError(f"--resume auto: no run folder with last.pt under {config_runs}")
    return max(runs, key=lambda p: p.stat().st_mtime)


def dataset_class_names(loader) -> list[str]:
    """Class names of the dataset behind a loader (walking through wrapper datasets)."""
    return list(_dataset_attribute(loader.dataset, "class_names"))


def dataset_category_ids(loader) -> list[int] | None:
    """COCO data: the category id of each label 1..C; None for data without category ids (VOC)."""
    category_map = _dataset_attribute(loader.dataset, "category_map")
    return None if category_map is None else [int(i) for i in category_map.category_ids]


def _dataset_attribute(dataset, name: str):
    """`name` of the first dataset that has it, down through wrappers (Subset's `dataset`,
    TransformedDataset's `raw`); None when none has it."""
    while dataset is not None and not hasattr(dataset, name):
        inner = getattr(dataset, "dataset", None)  # not `or`: an empty dataset is falsy
        dataset = inner if inner is not None else getattr(dataset, "raw", None)
    return getattr(dataset, name, None)


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
    optimizer = build_optimizer(module, train_cfg)
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
        logger=logger or RunLogger(None), run_dir=run_dir,
    )


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_state(session: TrainSession, rng: dict | None = None, state: TrainState | None = None) -> dict:
    state = state or session.state
    return {
        "model": session.module.state_dict(),
        "config": config_to_dict(session.config),
        "class_names": session.class_names,
        "category_ids": session.category_ids,
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "ema": session.ema.state_dict() if session.ema is not None else None,
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "best_metric": state.best_metric,
        "nonfinite_skipped": state.nonfinite_skipped,
        "epoch_end_due": state.epoch_end_due,
        "rng": rng if rng is not None else rng_states(),
    }


def save(session: TrainSession, name: str, rng: dict | None = None, state: TrainState | None = None) -> Path | None:
    """Writes `name` (last.pt / best.pt) in the run folder, on rank 0 only; `state` replaces the
    session's training state in the file."""
    if session.run_dir is None or not dist_utils.is_main():
        return None
    contents = checkpoint_state(session, rng, state)
    refuse_nonfinite_weights(session, contents, name)
    return save_checkpoint(contents, session.run_dir / name)


def refuse_nonfinite_weights(session: TrainSession, state: dict, name: str) -> None:
    """Weights that are no longer finite (gradients blew up on a finite loss, which train.nonfinite:
    skip cannot catch) stop the run instead of being saved: such a model detects nothing, in silence."""
    bad = nonfinite_tensors(state["model"])
    if bad:
        raise NonFiniteLossError(
            f"the model's weights are no longer finite at step {session.state.step} (epoch {session.state.epoch}; "
            f"{len(bad)} tensors, first {bad[0]}); {name} not written; lower train.lr or set train.clip_grad_norm")


def restore(session: TrainSession, checkpoint: dict) -> None:
    """Loads everything a checkpoint holds into the session (the inverse of checkpoint_state)."""
    try:
        session.module.load_state_dict(checkpoint["model"])
        session.optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint to resume does not fit this config's model "
                              f"({str(error).strip().splitlines()[0]}); resume with the config it was trained with") from None
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    if session.scaler is not None and checkpoint.get("scaler") is not None:
        session.scaler.load_state_dict(checkpoint["scaler"])
    if session.ema is not None and checkpoint.get("ema") is not None:
        session.ema.load_state_dict(checkpoint["ema"])
    session.state = TrainState(
        epoch=checkpoint["epoch"], step=checkpoint["step"], batch_in_epoch=checkpoint.get("batch_in_epoch", 0),
        best_metric=checkpoint.get("best_metric"), nonfinite_skipped=checkpoint.get("nonfinite_skipped", 0),
        epoch_end_due=bool(checkpoint.get("epoch_end_due", False)),
    )
    session.resume_rng = checkpoint.get("rng")
    if session.resume_rng is not None and session.state.batch_in_epoch == 0:
        restore_rng_states(session.resume_rng)
        session.resume_rng = None


# ---------------------------------------------------------------------------------------------------
# The loop


def targets_to_device(targets: Sequence[dict], device: torch.device) -> list[dict]:
    return [{"boxes": t["boxes"].to(device, non_blocking=True), "labels": t["labels"].to(device, non_blocking=True)}
            for t in targets]


def image_ids(targets: Sequence[dict]) -> list:
    ids = []
    for target in targets:
        value = target.get("image_id")
        ids.append(value.item() if torch.is_tensor(value) else value)
    return ids


def current_lr(session: TrainSession) -> float:
    """The heads' learning rate (the schedule's base; the backbone's may be a multiple of it)."""
    groups = session.optimizer.param_groups
    heads = [group["lr"] for group in groups if group.get("name", "").startswith("heads")]
    return max(heads) if heads else groups[0]["lr"]


def remember_boundary(session: TrainSession) -> None:
    """Copies the buffers (device to device, no host sync) and the RNG states (a few kB on the host)."""
    buffers = [buffer.detach() for buffer in session.module.buffers()]
    if session.boundary_buffers is None:
        session.boundary_buffers = [buffer.clone() for buffer in buffers]
    elif buffers:
        torch._foreach_copy_(session.boundary_buffers, buffers)
    session.boundary_rng = rng_states()


def rewind_to_boundary(session: TrainSession) -> None:
    """Puts back the buffers of the last optimiser step (before saving an interrupted run)."""
    if session.boundary_buffers is not None:
        with torch.no_grad():
            for buffer, saved in zip(session.module.buffers(), session.boundary_buffers):
                buffer.copy_(saved)


def optimizer_step(session: TrainSession) -> None:
    train_cfg = session.config.train
    if session.scaler is not None:
        session.scaler.unscale_(session.optimizer)
    if train_cfg.clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(session.module.parameters(), train_cfg.clip_grad_norm)
    if session.scaler is not None:
        session.scaler.step(session.optimizer)
        session.scaler.update()
    else:
        session.optimizer.step()
    session.optimizer.zero_grad(set_to_none=True)
    session.scheduler.step()
    if session.ema is not None:
        session.ema.update(session.module)
    session.state.step += 1


def seed_epoch(loader, epoch: int, seed: int) -> None:
    """Makes the epoch's data order and augmentation a function of (seed, epoch) alone: the
    DistributedSampler's epoch, the loader's generator (sampler order and worker seeds), the main
    process's transform stream, and the global RNG. A resumed run then replays the same epoch."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for sampler in (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)
    transforms = getattr(getattr(loader, "dataset", None), "transforms", None)
    if hasattr(transforms, "set_seed"):
        transforms.set_seed(seed)
    torch.manual_seed(seed)


def train_one_epoch(session: TrainSession, loader) -> dict[str, float]:
    """One epoch (or the rest of an interrupted one). Returns the epoch's mean loss terms.

    Raises KeyboardInterrupt on Ctrl-C (and for the `interrupt_after_steps` test hook), with
    `state.batch_in_epoch` telling how far the epoch got; NonFiniteLossError on a NaN/inf loss when
    train.nonfinite is stop.
    """
    config, state, device = session.config, session.state, session.device
    train_cfg = config.train
    epoch = state.epoch
    session.model.train()
    seed_epoch(loader, epoch, train_cfg.seed + epoch)
    skip = state.batch_in_epoch
    num_batches = len(loader)
    accumulate = train_cfg.accumulate
    sums: dict[str, torch.Tensor] = {}
    counted = 0
    window_images, window_start = 0, time.perf_counter()
    progress = tqdm(total=num_batches, initial=skip, desc=f"epoch {epoch + 1}/{train_cfg.epochs}",
                    disable=not dist_utils.is_main(), dynamic_ncols=True, leave=False)
    try:
        for index, (images, targets) in enumerate(loader):
            if index < skip:
                continue
            if index == skip:
                if session.resume_rng is not None:
                    restore_rng_states(session.resume_rng)
                    session.resume_rng = None
                remember_boundary(session)
            session.skip_report.add(skipped_in(targets), config.data.train_split, epoch=epoch + 1, step=state.step)
            images, image_sizes, _ = batch_to_device(images, targets, device, config.input.mean, config.input.std,
                                                     channels_last=train_cfg.channels_last)
            boundary = (index + 1) % accumulate == 0 or index + 1 == num_batches
            sync_context = contextlib.nullcontext()
            if not boundary and isinstance(session.model, nn.parallel.DistributedDataParallel):
                sync_context = session.model.no_sync()
            with sync_context:
                with session.autocast():
                    losses = session.model(images, image_sizes, targets_to_device(targets, device))
                loss = sum(losses.values())
                # One host sync per step, unavoidable to decide stop/skip before the weights change;
                # the detectors already synchronise inside the step (NMS and sampling give
                # data-dependent shapes), so this costs next to nothing. Under DDP the flag is reduced
                # so every rank takes the same branch.
                if not dist_utils.all_finite(loss):
                    handle_nonfinite(session, losses, targets, index)
                    state.batch_in_epoch = index + 1
                    progress.update(1)
                    continue
                scaled = loss / accumulate
                if session.scaler is not None:
                    scaled = session.scaler.scale(scaled)
                scaled.backward()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
            counted += 1
            window_images += images.shape[0] * dist_utils.world_size()
            progress.update(1)
            if not boundary:
                continue
            optimizer_step(session)
            # Counted only once the step is taken: an interruption inside an accumulation group
            # replays the whole group on resume (its gradients were not saved).
            state.batch_in_epoch = index + 1
            remember_boundary(session)
            if state.step % train_cfg.log_every == 0:
                rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                log_step(session, losses, rate, progress)
                window_images, window_start = 0, time.perf_counter()
            if session.interrupt_after_steps is not None and state.step >= session.interrupt_after_steps:
                raise KeyboardInterrupt
    finally:
        progress.close()
    if not sums:
        return {}
    names = list(sums)
    means = dist_utils.mean_over_ranks(torch.stack([sums[name] for name in names]) / counted).tolist()
    return dict(zip(names, means))


def handle_nonfinite(session: TrainSession, losses: dict, targets: Sequence[dict], index: int) -> None:
    state = session.state
    values = ", ".join(f"{key}={value.detach().float().item():.4g}" for key, value in losses.items())
    where = f"step {state.step} (epoch {state.epoch + 1}, batch {index})"
    ids = ", ".join(str(i) for i in image_ids(targets))
    if session.config.train.nonfinite == "stop":
        raise NonFiniteLossError(f"non-finite loss at {where}: {values}; image ids: {ids} "
                                 f"(train.nonfinite=skip skips such steps)")
    session.optimizer.zero_grad(set_to_none=True)
    state.nonfinite_skipped += 1
    session.logger.info(f"skipped non-finite loss at {where}: {values}; image ids: {ids} "
                        f"({state.nonfinite_skipped} skipped so far)")
    session.logger.record({"type": "nonfinite", "epoch": state.epoch + 1, "step": state.step, "batch": index,
                           "image_ids": [str(i) for i in image_ids(targets)]})


def log_step(session: TrainSession, losses: dict, images_per_s: float, progress) -> None:
    """The host sync of a log line: loss terms averaged over ranks, lr, speed."""
    names = list(losses)
    values = dist_utils.mean_over_ranks(torch.stack([losses[n].detach().float() for n in names])).tolist()
    terms = dict(zip(names, values))
    total = sum(values)
    lr = current_lr(session)
    state = session.state
    progress.set_postfix_str(
        f"loss {total:.3f} " + " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in terms.items())
        + f" lr {lr:.2e} {images_per_s:.1f} img/s", refresh=False)
    session.logger.record({"type": "train", "epoch": state.epoch + 1, "step": state.step, "loss": total, **terms,
                           "lr": lr, "images_per_s": images_per_s})
    session.logger.scalars({"loss": total, **terms}, state.step, "train")
    session.logger.scalars({"lr": lr, "images_per_s": images_per_s}, state.step, "train")


def run_evaluation(session: TrainSession, val_loader, final: bool = False) -> dict:
    config, state = session.config, session.state
    model = session.eval_model()
    dist_utils.broadcast_buffers(model)
    started = time.perf_counter()
    results = evaluate(model, val_loader, session.class_names, session.device, metrics=config.eval.metric,
                       iou_thresh=config.eval.iou_thresh, autocast=session.autocast,
                       mean=config.input.mean, std=config.input.std)
    session.skip_report.add(results.get("skipped", []), config.data.val_split, epoch=state.epoch, step=state.step)
    score = headline_map(results)
    seconds = time.perf_counter() - started
    record = {"type": "eval", "epoch": state.epoch, "step": state.step, "map": score, "seconds": seconds}
    for name in ("voc07", "voc12"):
        if name in results:
            record[name] = {"map": results[name]["map"], "ap": results[name]["ap"]}
    if "coco" in results:
        record["coco"] = {k: v for k, v in results["coco"].items() if isinstance(v, (int, float)) or v is None}
    session.logger.record(record)
    session.logger.scalars({"map": score}, state.step, "val")
    shown = f"{score:.4f}" if score is not None else "n/a"
    session.logger.info(f"epoch {state.epoch}: val mAP@{config.eval.iou_thresh:g} ({config.eval.metric}) {shown} "
                        f"on {results['num_images']} images ({seconds:.1f} s)")
    if dist_utils.is_main():
        log_val_images(session, val_loader)
    return results


def log_val_images(session: TrainSession, val_loader, count: int = 4) -> None:
    """A few validation images with their detections drawn, to TensorBoard."""
    if not session.logger.has_tensorboard:
        return
    from detect.engine.visualize import draw_batch_detections

    mean, std = session.config.input.mean, session.config.input.std
    model = session.eval_model()
    loader_iter = iter(val_loader)
    try:
        images, targets = next(loader_iter)
    except StopIteration:
        return
    images, targets = images[:count], targets[:count]
    for detections, _ in run_detector(model, [(images, targets)], session.device, session.autocast, mean, std):
        drawn = draw_batch_detections(images, targets, detections, mean, std, session.class_names)
        for i, image in enumerate(drawn):
            session.logger.image(f"val/detections_{i}", image, session.state.step)


def fit(session: TrainSession, train_loader, val_loader=None) -> dict | None:
    """Trains up to train.epochs, evaluating every train.eval_every epochs and at the end; writes
    last.pt every epoch and best.pt on a better validation mAP. Returns the last evaluation's
    results. Ctrl-C writes last.pt (mid-epoch) and re-raises KeyboardInterrupt."""
    config, state = session.config, session.state
    results = None
    try:
        while state.epoch < config.train.epochs or state.epoch_end_due:
            if not state.epoch_end_due:
                train_epoch_and_log(session, train_loader)
            results = end_epoch(session, val_loader) or results
    except KeyboardInterrupt:
        rewind_to_boundary(session)
        path = save(session, "last.pt", rng=session.boundary_rng)
        if path is not None:
            session.logger.info(interrupted_message(state, path))
        raise
    if results is not None and dist_utils.is_main():
        from detect.metrics.evaluator import format_results

        session.logger.info(format_results(results, session.class_names))
    return results


def train_epoch_and_log(session: TrainSession, train_loader) -> None:
    """One epoch of training (or the rest of an interrupted one), its log line and record."""
    state, train_cfg = session.state, session.config.train
    started = time.perf_counter()
    means = train_one_epoch(session, train_loader)
    state.epoch += 1
    state.batch_in_epoch = 0
    state.epoch_end_due = True
    seconds = time.perf_counter() - started
    terms = " ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in means.items())
    session.logger.info(
        f"epoch {state.epoch}/{train_cfg.epochs}: loss {sum(means.values()):.4f} ({terms}) "
        f"lr {current_lr(session):.3e} step {state.step} {seconds:.1f} s"
        + (f", {state.nonfinite_skipped} non-finite steps skipped" if state.nonfinite_skipped else ""))
    session.logger.record({"type": "epoch", "epoch": state.epoch, "step": state.step, "seconds": seconds,
                           **{f"mean_{k}": v for k, v in means.items()}})


def end_epoch(session: TrainSession, val_loader) -> dict | None:
    """The evaluation when due, best.pt on a better mAP, then last.pt. Returns the evaluation's results.

    `epoch_end_due` (and `best_metric`) change only once best.pt is written, so a run interrupted
    before that evaluates again on resume, and still writes best.pt."""
    config, state = session.config, session.state
    train_cfg = config.train
    results = None
    last_epoch = state.epoch == train_cfg.epochs
    due = train_cfg.eval_every > 0 and state.epoch % train_cfg.eval_every == 0
    if val_loader is not None and (due or last_epoch):
        results = run_evaluation(session, val_loader)
        score = headline_map(results)
        if score is not None and (state.best_metric is None or score > state.best_metric):
            save(session, "best.pt", state=replace(state, best_metric=score, epoch_end_due=False))
            state.best_metric = score
    state.epoch_end_due = False
    save(session, "last.pt")
    return results


def interrupted_message(state: TrainState, path: Path) -> str:
    if state.epoch_end_due:
        where = f"after epoch {state.epoch}'s training, before its evaluation and checkpoints were done"
    else:
        where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
    return f"interrupted at step {state.step} ({where}); wrote {path}; continue with --resume auto"


# ---------------------------------------------------------------------------------------------------
# From a config


def check_run_folder(run_dir: Path, config: Config, config_file: Path | None, resuming: bool) -> None:
    """The run folder can be written, and none of its files replaces an input of the run: the config
    file, a checkpoint given as model.pretrained."""
    from detect.outputs import refuse_overwrite, writable_folder

    pretrained = Path(config.model.pretrained) if config.model.pretrained not in ("imagenet", "coco", "none") else None
    outputs = [run_dir / name for name in ("best.pt", "train.log", "metrics.jsonl")]
    if not resuming:  # a resumed run goes on in its own folder: its last.pt and config.yaml are its own
        outputs += [run_dir / "last.pt", run_dir / "config.yaml"]
    refuse_overwrite("--output-dir", outputs, [config_file, pretrained], given=run_dir)
    writable_folder("--output-dir", run_dir)


def forget_lost_records(metrics_path: Path, checkpoint: dict) -> None:
    """Before a resume: drops the records of metrics.jsonl that came after the checkpoint (the resumed
    run writes them again as it replays those steps; after a kill -9 or a crash there can be many),
    and a half-written last line. After it means a later step, the end (or evaluation) of an epoch the
    checkpoint had not finished, or the evaluation a checkpoint with `epoch_end_due` runs again."""
    if not metrics_path.is_file():
        return
    step, epoch, epoch_end_due = checkpoint["step"], checkpoint["epoch"], bool(checkpoint.get("epoch_end_due"))
    kept = []
    for line in metrics_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind, record_epoch = record.get("type"), record.get("epoch", 0)
        later = (record.get("step", 0) > step
                 or (kind in ("epoch", "eval") and record_epoch > epoch)
                 or (kind == "eval" and epoch_end_due and record_epoch == epoch))
        if not later:
            kept.append(line)
    # Written aside and renamed: a kill now must not lose the records that stay.
    rewritten = metrics_path.with_name(f".{metrics_path.name}.tmp{os.getpid()}")
    rewritten.write_text("".join(f"{line}\n" for line in kept))
    os.replace(rewritten, metrics_path)


def build_loaders(config: Config, distributed: bool):
    """(train loader, val loader); both splits use the training split's class names (see with_class_names)."""
    from detect.data.build import build_dataset, with_class_names
    from detect.data.loader import build_dataloader

    raw_train = build_dataset(config.data, config.data.train_split, training=True)
    data_cfg = with_class_names(config.data, raw_train)
    train_loader = build_dataloader(data_cfg, config.input, config.augment, config.data.train_split,
                                    train=True, batch_size=config.train.batch_size, distributed=distributed,
                                    seed=config.train.seed, raw_dataset=raw_train)
    val_loader = build_dataloader(data_cfg, config.input, config.augment, config.data.val_split,
                                  train=False, batch_size=config.eval.batch_size, distributed=distributed,
                                  seed=config.train.seed)
    return train_loader, val_loader


def run_training(config: Config, output_dir: str | Path | None = None, device: str = "auto",
                 resume: str | None = None, interrupt_after_steps: int | None = None,
                 build_loaders_fn: Callable | None = None, build_model_fn: Callable | None = None,
                 config_file: Path | None = None) -> Path:
    """Trains from a config; returns the run folder. `build_loaders_fn(config, distributed)` and
    `build_model_fn(config, num_classes)` replace the real data and model (tests). `config_file`:
    the YAML the config was read from, which the run folder's files must not replace."""
    torch_device = dist_utils.init_distributed(resolve_device(device))
    previous_handler = stop_on_sigterm()
    try:
        return _run(config, output_dir, torch_device, resume, interrupt_after_steps,
                    build_loaders_fn or build_loaders, build_model_fn, config_file)
    except torch.OutOfMemoryError:
        size = (f"{config.input.size}x{config.input.size}" if config.input.resize == "fixed"
                else f"min_size {config.input.min_size}, max_size {config.input.max_size}")
        raise DetectError(
            f"CUDA out of memory with train.batch_size={config.train.batch_size} and images of {size}: "
            f"lower train.batch_size (train.accumulate keeps the effective batch) or the input size"
        ) from None
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        dist_utils.shutdown()


def stop_on_sigterm():
    """SIGTERM (a cluster's scheduler, `kill`, `timeout`) stops like Ctrl-C: last.pt is written.
    Returns the previous handler (None when not in the main thread, where handlers cannot be set).

    Only the first SIGTERM interrupts: schedulers often repeat it, and a second KeyboardInterrupt
    would abort the writing of last.pt. SIGTERM sent to the whole process group also reaches the
    DataLoader workers; they ignore it (detect.data.loader.WorkerInit) and end with the loader."""
    if threading.current_thread() is not threading.main_thread():
        return None
    received = []

    def interrupt(signum, frame):
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def check_same_classes(checkpoint: dict, class_names: list[str], path: Path) -> None:
    """A resumed run must keep the checkpoint's classes in its order: its head's outputs are those labels."""
    saved = list(checkpoint["class_names"])
    if saved == list(class_names):
        return
    if sorted(saved) == sorted(class_names):
        problem = "in another order"
    else:
        problem = f"differ ({', '.join(class_names)})"
    raise CheckpointError(f"{path}: cannot resume: its classes are {', '.join(saved)}; this config's {problem}; "
                          f"set data.classes to the checkpoint's list")


def _run(config, output_dir, device, resume, interrupt_after_steps, build_loaders_fn, build_model_fn,
         config_file=None) -> Path:
    checkpoint = checkpoint_path = None
    if resume is not None:
        checkpoint_path = find_resume_checkpoint(config, resume, output_dir)
        checkpoint = load_checkpoint(checkpoint_path)
        check_finite_weights(checkpoint, checkpoint_path)
        run_dir = checkpoint_path.parent
    else:
        run_dir = new_run_dir(config, output_dir)
    run_dir = Path(dist_utils.broadcast_object(str(run_dir)))
    if dist_utils.is_main():
        check_run_folder(run_dir, config, config_file, resuming=checkpoint is not None)
        if checkpoint is not None:
            forget_lost_records(run_dir / "metrics.jsonl", checkpoint)
    seed_everything(config.train.seed, config.train.deterministic)
    logger = RunLogger(run_dir, enabled=dist_utils.is_main(),
                       purge_step=checkpoint["step"] + 1 if checkpoint is not None else None)
    train_loader, val_loader = build_loaders_fn(config, dist_utils.is_distributed())
    class_names = dataset_class_names(train_loader)
    if not class_names:
        raise DetectError(f"{config.data.root}: the training split '{config.data.train_split}' has no class names; "
                          f"set data.classes")
    # Stored resolved: config.yaml and every checkpoint name the classes in label order.
    config = config.model_copy(update={"data": config.data.model_copy(update={"classes": class_names})})
    if checkpoint is not None:
        check_same_classes(checkpoint, class_names, checkpoint_path)
    if build_model_fn is not None:
        model = build_model_fn(config, len(class_names))
    else:
        from detect.models.build import build_model

        model = build_model(config.model, config.input, len(class_names), list(class_names))
    steps_per_epoch = math.ceil(len(train_loader) / config.train.accumulate)
    session = make_session(config, model, class_names, device, steps_per_epoch, run_dir, logger)
    session.interrupt_after_steps = interrupt_after_steps
    session.category_ids = dataset_category_ids(train_loader)
    session.skip_report = SkipReport(logger)
    if dist_utils.is_main():
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
    if checkpoint is not None:
        restore(session, checkpoint)
        logger.info(f"resumed from {checkpoint_path}: epoch {session.state.epoch}, step {session.state.step}")
    num_params = sum(p.numel() for p in session.module.parameters() if p.requires_grad)
    logger.info(f"run folder {run_dir}; {config.model.arch} ({config.model.backbone}), {len(class_names)} classes, "
                f"{num_params / 1e6:.2f} M trainable parameters; {len(train_loader.dataset)} train images, "
                f"{steps_per_epoch} steps/epoch; device {device} x {dist_utils.world_size()}")
    for split, loader in ((config.data.train_split, train_loader), (config.data.val_split, val_loader)):
        if loader is not None:  # problems found while parsing the annotations
            session.skip_report.add(dataset_errors(_dataset_attribute(loader.dataset, "log")), split)
    try:
        fit(session, train_loader, val_loader)
    finally:
        logger.close()
    return run_dir
