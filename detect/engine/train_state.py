"""The training state a checkpoint holds, built from a `TrainSession` and restored into one.

A training checkpoint (detect.engine.checkpoint writes the file, detect.checkpoints reads it) is the dict
`checkpoint_state` builds:
    model          state dict of the (unwrapped) model
    config         the resolved config as a plain dict (detect.config.config_to_dict)
    class_names    list[str]; label i is class_names[i - 1]
    category_ids   COCO data: list[int], label i is COCO category category_ids[i - 1]; YOLO data: the class ids
                   of its names likewise; None otherwise
    optimizer, scheduler, scaler, ema    state dicts, or None
    epoch          epochs completed
    step           optimiser steps done
    batch_in_epoch batches of the interrupted epoch already trained (0 at an epoch's end)
    best_metric    best validation mAP so far (or None)
    best_epoch     the epoch it was reached in (or None): train.patience counts from it
    nonfinite_skipped   steps skipped for a non-finite loss
    epoch_end_due  the epoch's training is done, its evaluation and checkpoints are not
    rng            python, numpy, torch and cuda RNG states (detect.engine.checkpoint.rng_states)
`restore` is its inverse. `detect eval`, `infer` and `export` read only model, config, class_names,
category_ids (and ema).
"""

from __future__ import annotations

from pathlib import Path

from detect.checkpoints import nonfinite_tensors
from detect.config import config_to_dict
from detect.engine import distributed as dist_utils
from detect.engine.checkpoint import restore_rng_states, rng_states, save_checkpoint
from detect.engine.session import TrainSession, TrainState
from detect.errors import CheckpointError, DetectError


class NonFiniteLossError(DetectError):
    """The loss became NaN or infinite (train.nonfinite: stop)."""


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
        "best_epoch": state.best_epoch,
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
                              f"({str(error).strip().splitlines()[0]}); resume with the config it was trained "
                              f"with") from None
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    if session.scaler is not None and checkpoint.get("scaler") is not None:
        session.scaler.load_state_dict(checkpoint["scaler"])
    if session.ema is not None and checkpoint.get("ema") is not None:
        session.ema.load_state_dict(checkpoint["ema"])
    session.state = TrainState(
        epoch=checkpoint["epoch"], step=checkpoint["step"], batch_in_epoch=checkpoint.get("batch_in_epoch", 0),
        best_metric=checkpoint.get("best_metric"), best_epoch=checkpoint.get("best_epoch"),
        nonfinite_skipped=checkpoint.get("nonfinite_skipped", 0),
        epoch_end_due=bool(checkpoint.get("epoch_end_due", False)),
    )
    session.resume_rng = checkpoint.get("rng")
    if session.resume_rng is not None and session.state.batch_in_epoch == 0:
        restore_rng_states(session.resume_rng)
        session.resume_rng = None
