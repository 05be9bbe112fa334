"""The training loop: plain functions over one `TrainSession` (detect.engine.session).

    fit(session, train_loader, val_loader)   epochs of `train_one_epoch`, evaluation, checkpoints
    train_one_epoch(session, loader)         one pass over the loader

detect.engine.run builds the session from a config; train_state.py holds what a checkpoint keeps.

Exactness of resume: every epoch's data order and augmentation are reseeded from `train.seed + epoch`
just before the epoch's iterator is made (`seed_epoch`), so a run resumed mid-epoch replays the same
batches, skips those already trained, then restores the RNG states saved at the interruption. (With
`data.persistent_workers` the workers keep their first epoch's seeds, so augmentation after a resume
is equally random but not bit-identical.)
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from detect.data.dataset import skipped_in
from detect.data.normalize import batch_to_device
from detect.engine import distributed as dist_utils
from detect.engine.checkpoint import restore_rng_states
from detect.engine.curves import write_run_files
from detect.engine.interrupt import interrupted_message, remember_boundary, rewind_to_boundary
from detect.engine.session import TrainSession
from detect.engine.train_state import NonFiniteLossError, save
from detect.engine.validate import run_evaluation
from detect.evaluation.evaluate import headline_map
from detect.progress import bars_enabled


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

    Raises KeyboardInterrupt on Ctrl-C (or SIGTERM, see detect.engine.interrupt), with
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
                    disable=not (dist_utils.is_main() and bars_enabled()), dynamic_ncols=True, leave=False)
    try:
        for index, (images, targets) in enumerate(loader):
            if index < skip:
                continue
            if index == skip:
                resume_here(session)
            session.skip_report.add(skipped_in(targets), config.data.train_split, epoch=epoch + 1, step=state.step)
            images, image_sizes, _ = batch_to_device(images, targets, device, config.input.mean, config.input.std,
                                                     channels_last=train_cfg.channels_last)
            boundary = (index + 1) % accumulate == 0 or index + 1 == num_batches
            losses = forward_backward(session, images, image_sizes, targets, index, boundary)
            progress.update(1)
            if losses is None:  # a non-finite loss, skipped
                state.batch_in_epoch = index + 1
                continue
            for key, value in losses.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
            counted += 1
            window_images += images.shape[0] * dist_utils.world_size()
            if not boundary:
                continue
            optimizer_step(session)
            if session.budget is not None:
                session.budget.after_step(session)
            # Counted only once the step is taken: an interruption inside an accumulation group
            # replays the whole group on resume (its gradients were not saved).
            state.batch_in_epoch = index + 1
            remember_boundary(session)
            if state.step % train_cfg.log_every == 0:
                rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                log_step(session, losses, rate, progress)
                window_images, window_start = 0, time.perf_counter()
    finally:
        progress.close()
    return mean_losses(sums, counted)


def resume_here(session: TrainSession) -> None:
    """At the first batch this run trains in the epoch: the RNG states of an interrupted run are put
    back (its skipped batches were drawn with the epoch's seeds), and the boundary remembered."""
    if session.resume_rng is not None:
        restore_rng_states(session.resume_rng)
        session.resume_rng = None
    remember_boundary(session)


def forward_backward(session: TrainSession, images: torch.Tensor, image_sizes: torch.Tensor,
                     targets: Sequence[dict], index: int, boundary: bool) -> dict[str, torch.Tensor] | None:
    """The batch's `loss_*` terms, their gradients added (scaled for accumulation and the AMP scaler;
    DDP synchronises them only at an accumulation `boundary`). None for a non-finite loss that
    train.nonfinite: skip skipped (stop raises NonFiniteLossError)."""
    sync_context = contextlib.nullcontext()
    if not boundary and isinstance(session.model, nn.parallel.DistributedDataParallel):
        sync_context = session.model.no_sync()
    with sync_context:
        with session.autocast():
            losses = session.model(images, image_sizes, targets_to_device(targets, session.device))
        loss = sum(losses.values())
        # One host sync per step, unavoidable to decide stop/skip before the weights change;
        # the detectors already synchronise inside the step (NMS and sampling give
        # data-dependent shapes), so this costs next to nothing. Under DDP the flag is reduced
        # so every rank takes the same branch.
        if not dist_utils.all_finite(loss):
            handle_nonfinite(session, losses, targets, index)
            return None
        scaled = loss / session.config.train.accumulate
        if session.scaler is not None:
            scaled = session.scaler.scale(scaled)
        scaled.backward()
    return losses


def mean_losses(sums: dict[str, torch.Tensor], counted: int) -> dict[str, float]:
    """The epoch's mean of each loss term over its `counted` batches, averaged over ranks."""
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


def fit(session: TrainSession, train_loader, val_loader=None) -> dict | None:
    """Trains up to train.epochs, evaluating every train.eval_every epochs and at the end; writes
    last.pt every epoch and best.pt on a better validation mAP; stops early once train.patience epochs
    pass without a better one. Returns the last evaluation's results. Ctrl-C writes last.pt
    (mid-epoch) and re-raises KeyboardInterrupt."""
    state = session.state
    results = None
    if not state.epoch_end_due and patience_spent(session):
        session.logger.info(f"stopped early at epoch {state.epoch} ({early_stop_reason(session)}); not training "
                            f"on: raise train.patience to continue")
        return None
    try:
        # session.config, read again each epoch: a time budget fits train.epochs as the run goes
        while state.epoch < session.config.train.epochs or state.epoch_end_due:
            if not state.epoch_end_due:
                started = time.perf_counter()
                train_epoch_and_log(session, train_loader)
                if session.budget is not None:
                    session.budget.before_epoch_end(session, time.perf_counter() - started)
            results = end_epoch(session, val_loader) or results
            if patience_spent(session) and state.epoch < session.config.train.epochs:
                session.logger.info(f"early stop after epoch {state.epoch}: {early_stop_reason(session)}")
                session.logger.record({"type": "early_stop", "epoch": state.epoch, "step": state.step,
                                       "best_epoch": state.best_epoch, "best_map": state.best_metric})
                break
    except KeyboardInterrupt:
        rewind_to_boundary(session)
        path = save(session, "last.pt", rng=session.boundary_rng)
        if path is not None:
            session.logger.info(interrupted_message(state, path))
        raise
    if results is not None and dist_utils.is_main():
        from detect.evaluation.evaluator import format_results

        session.logger.info(format_results(results, session.class_names))
    return results


def nothing_left(session: TrainSession) -> str | None:
    """Why a resumed run would train nothing (all its epochs done, or stopped early), or None."""
    config, state = session.config, session.state
    if state.epoch_end_due:
        return None
    if state.epoch >= config.train.epochs:
        return (f"the run has trained all its {config.train.epochs} epochs; to train on, raise train.epochs "
                f"(e.g. --set train.epochs={config.train.epochs * 2})")
    if patience_spent(session):
        return f"it stopped early at epoch {state.epoch} ({early_stop_reason(session)}); raise train.patience to go on"
    return None


def patience_spent(session: TrainSession) -> bool:
    """train.patience epochs have passed since the best validation mAP."""
    patience, state = session.config.train.patience, session.state
    return patience is not None and state.best_epoch is not None and state.epoch - state.best_epoch >= patience


def early_stop_reason(session: TrainSession) -> str:
    state = session.state
    return (f"no better validation mAP for {state.epoch - state.best_epoch} epochs (train.patience "
            f"{session.config.train.patience}); the best, {state.best_metric:.4f} at epoch {state.best_epoch}, "
            f"is in best.pt")


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
                           "lr": current_lr(session), **{f"mean_{k}": v for k, v in means.items()}})
    session.logger.scalars({**means, "loss": sum(means.values()), "lr": current_lr(session), "seconds": seconds},
                           state.epoch, "epoch")


def end_epoch(session: TrainSession, val_loader) -> dict | None:
    """The evaluation when due, best.pt on a better mAP, then last.pt. Returns the evaluation's results.

    `epoch_end_due` (and `best_metric`) change only once best.pt is written, so a run interrupted
    before that evaluates again on resume, and still writes best.pt."""
    config, state = session.config, session.state
    train_cfg = config.train
    results = None
    last_epoch = state.epoch == train_cfg.epochs
    due = train_cfg.eval_every > 0 and state.epoch % train_cfg.eval_every == 0
    # A time budget measures the validation's cost at once (and keeps an early best.pt).
    budget_measures = session.budget is not None and session.budget.eval_seconds is None
    if val_loader is not None and (due or last_epoch or budget_measures):
        started = time.perf_counter()
        results = run_evaluation(session, val_loader)
        if session.budget is not None:
            session.budget.after_evaluation(session, time.perf_counter() - started)
        score = headline_map(results)
        if score is not None and (state.best_metric is None or score > state.best_metric):
            save(session, "best.pt", state=replace(state, best_metric=score, best_epoch=state.epoch,
                                                   epoch_end_due=False))
            state.best_metric, state.best_epoch = score, state.epoch
    state.epoch_end_due = False
    save(session, "last.pt")
    if session.run_dir is not None and dist_utils.is_main() and "csv" in config.train.loggers:
        write_run_files(session.run_dir)  # results.csv and curves.png, this epoch included
    return results
