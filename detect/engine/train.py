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
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detect.config import Config, config_to_dict, config_to_yaml
from detect.data.normalise import batch_to_device
from detect.engine import distributed as dist_utils
from detect.engine.checkpoint import (load_checkpoint, restore_rng_states, rng_states, save_checkpoint)
from detect.engine.ema import ModelEMA
from detect.engine.evaluate import evaluate, headline_map, run_detector
from detect.engine.logger import RunLogger
from detect.engine.optim import build_optimizer, build_scheduler
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

    def autocast(self):
        return autocast_context(self.config, self.device)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.module


# ---------------------------------------------------------------------------------------------------
# Set-up helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DetectError(f"--device: '{name}' is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def autocast_context(config: Config, device: torch.device):
    """bf16 (default) or fp16 autocast on CUDA when train.amp; fp32 on CPU."""
    if device.type != "cuda" or not config.train.amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.train.amp_dtype == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


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
    """`auto`: last.pt of --output-dir, else of the newest run folder of this config; else a path."""
    if resume != "auto":
        return Path(resume)
    if output_dir is not None:
        candidate = Path(output_dir) / "last.pt"
        if not candidate.is_file():
            raise DetectError(f"--resume auto: no last.pt in {output_dir}")
        return candidate
    config_runs = Path(config.train.output_dir) / config.name
    runs = sorted(p for p in config_runs.glob("*/last.pt")) if config_runs.is_dir() else []
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


def checkpoint_state(session: TrainSession, rng: dict | None = None) -> dict:
    state = session.state
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
        "rng": rng if rng is not None else rng_states(),
    }


def save(session: TrainSession, name: str, rng: dict | None = None) -> Path | None:
    """Writes `name` (last.pt / best.pt) in the run folder, on rank 0 only."""
    if session.run_dir is None or not dist_utils.is_main():
        return None
    return save_checkpoint(checkpoint_state(session, rng), session.run_dir / name)


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
    train_cfg = config.train
    results = None
    try:
        while state.epoch < train_cfg.epochs:
            started = time.perf_counter()
            means = train_one_epoch(session, train_loader)
            state.epoch += 1
            state.batch_in_epoch = 0
            seconds = time.perf_counter() - started
            terms = " ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in means.items())
            session.logger.info(
                f"epoch {state.epoch}/{train_cfg.epochs}: loss {sum(means.values()):.4f} ({terms}) "
                f"lr {current_lr(session):.3e} step {state.step} {seconds:.1f} s"
                + (f", {state.nonfinite_skipped} non-finite steps skipped" if state.nonfinite_skipped else ""))
            session.logger.record({"type": "epoch", "epoch": state.epoch, "step": state.step, "seconds": seconds,
                                   **{f"mean_{k}": v for k, v in means.items()}})
            last_epoch = state.epoch == train_cfg.epochs
            due = train_cfg.eval_every > 0 and state.epoch % train_cfg.eval_every == 0
            if val_loader is not None and (due or last_epoch):
                results = run_evaluation(session, val_loader)
                score = headline_map(results)
                if score is not None and (state.best_metric is None or score > state.best_metric):
                    state.best_metric = score
                    save(session, "best.pt")
            save(session, "last.pt")
    except KeyboardInterrupt:
        rewind_to_boundary(session)
        path = save(session, "last.pt", rng=session.boundary_rng)
        if path is not None:
            session.logger.info(f"interrupted at step {state.step} (epoch {state.epoch + 1}, batch "
                                f"{state.batch_in_epoch}); wrote {path}; continue with --resume auto")
        raise
    if results is not None and dist_utils.is_main():
        from detect.metrics.evaluator import format_results

        session.logger.info(format_results(results, session.class_names))
    return results


# ---------------------------------------------------------------------------------------------------
# From a config


def build_loaders(config: Config, distributed: bool):
    from detect.data.loader import build_dataloader

    train_loader = build_dataloader(config.data, config.input, config.augment, config.data.train_split,
                                    train=True, batch_size=config.train.batch_size, distributed=distributed,
                                    seed=config.train.seed)
    val_loader = build_dataloader(config.data, config.input, config.augment, config.data.val_split,
                                  train=False, batch_size=config.eval.batch_size, distributed=distributed,
                                  seed=config.train.seed)
    return train_loader, val_loader


def run_training(config: Config, output_dir: str | Path | None = None, device: str = "auto",
                 resume: str | None = None, interrupt_after_steps: int | None = None,
                 build_loaders_fn: Callable | None = None, build_model_fn: Callable | None = None) -> Path:
    """Trains from a config; returns the run folder. `build_loaders_fn(config, distributed)` and
    `build_model_fn(config, num_classes)` replace the real data and model (tests)."""
    torch_device = dist_utils.init_distributed(resolve_device(device))
    previous_handler = stop_on_sigterm()
    try:
        return _run(config, output_dir, torch_device, resume, interrupt_after_steps,
                    build_loaders_fn or build_loaders, build_model_fn)
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
    """SIGTERM (a cluster's scheduler, `kill`) stops like Ctrl-C: last.pt is written. Returns the
    previous handler (None when not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _run(config, output_dir, device, resume, interrupt_after_steps, build_loaders_fn, build_model_fn) -> Path:
    checkpoint = None
    if resume is not None:
        checkpoint_path = find_resume_checkpoint(config, resume, output_dir)
        checkpoint = load_checkpoint(checkpoint_path)
        run_dir = checkpoint_path.parent
    else:
        run_dir = new_run_dir(config, output_dir)
    run_dir = Path(dist_utils.broadcast_object(str(run_dir)))
    seed_everything(config.train.seed, config.train.deterministic)
    logger = RunLogger(run_dir, enabled=dist_utils.is_main())
    train_loader, val_loader = build_loaders_fn(config, dist_utils.is_distributed())
    class_names = dataset_class_names(train_loader)
    if build_model_fn is not None:
        model = build_model_fn(config, len(class_names))
    else:
        from detect.models.build import build_model

        model = build_model(config.model, config.input, len(class_names), list(class_names))
    steps_per_epoch = math.ceil(len(train_loader) / config.train.accumulate)
    session = make_session(config, model, class_names, device, steps_per_epoch, run_dir, logger)
    session.interrupt_after_steps = interrupt_after_steps
    session.category_ids = dataset_category_ids(train_loader)
    if dist_utils.is_main():
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
    if checkpoint is not None:
        restore(session, checkpoint)
        logger.info(f"resumed from {run_dir / 'last.pt'}: epoch {session.state.epoch}, step {session.state.step}")
    num_params = sum(p.numel() for p in session.module.parameters() if p.requires_grad)
    logger.info(f"run folder {run_dir}; {config.model.arch} ({config.model.backbone}), {len(class_names)} classes, "
                f"{num_params / 1e6:.2f} M trainable parameters; {len(train_loader.dataset)} train images, "
                f"{steps_per_epoch} steps/epoch; device {device} x {dist_utils.world_size()}")
    try:
        fit(session, train_loader, val_loader)
    finally:
        logger.close()
    return run_dir
