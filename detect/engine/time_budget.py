"""`train.time_minutes` (`detect train --time MINUTES`): a run that ends within a wall-clock budget with
its best model, its schedule fitted to the budget so that the learning rate completes its decay
instead of being cut off mid-way.

    budget = TimeBudget(minutes, started=time.perf_counter(), steps_per_epoch, val_images)
    budget.after_step(session)                   in the first epoch: times PROBE_STEPS steps, then fits
    budget.after_evaluation(session, seconds)    the first validation's cost, measured: fits again
    budget.before_epoch_end(session, seconds)    after each epoch: fits again from the measured epochs;
                                                 the last epoch that fits ends the run

Fitting sets `train.epochs` (and `train.eval_every`, so that validation takes about a tenth of the
budget and happens EVALUATIONS times) in the session's config and re-bases the schedule on it
(warmup share and cosine decay follow train.epochs). The fitted config is what the checkpoints hold,
so `--resume` trains the same schedule to its end. Before the first validation its cost is estimated
from the training speed (EVAL_COST: inference takes about this share of a training step's time per
image); it is measured at the first validation, which comes early (after the first epoch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from detect.engine import distributed as dist_utils
from detect.engine.optim import lr_factor

PROBE_SKIP = 2  # optimiser steps left out of the timing (first batches: worker start, allocation)
PROBE_STEPS = 8  # optimiser steps timed before the first fit
RESERVE_SECONDS = 4.0  # kept back for the last checkpoints, the results table and the process's exit
EVALUATIONS = 5  # validations planned in a run (besides the first and the last)
EVAL_COST = 0.4  # an image's inference time against its training time, before it is measured


@dataclass
class TimeBudget:
    seconds: float
    started: float  # time.perf_counter() when the run started (its data and model count too)
    steps_per_epoch: int
    val_images: int
    batch_size: int
    probe_started: float | None = None
    step_seconds: float | None = None
    eval_seconds: float | None = None
    epoch_seconds: float | None = None  # the mean measured epoch (training only)
    epochs_timed: int = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    # ----------------------------------------------------------------------------------------------
    # the measurements

    def after_step(self, session) -> None:
        """Times the first epoch's steps PROBE_SKIP .. PROBE_SKIP + PROBE_STEPS, then fits."""
        if self.step_seconds is not None:
            return
        done = session.state.step
        if done == PROBE_SKIP:
            self.probe_started = time.perf_counter()
        probe_end = min(PROBE_SKIP + PROBE_STEPS, self.steps_per_epoch)
        if done >= probe_end and self.probe_started is not None:
            self.step_seconds = (time.perf_counter() - self.probe_started) / max(1, done - PROBE_SKIP)
            self.fit(session)

    def after_evaluation(self, session, seconds: float) -> None:
        first = self.eval_seconds is None
        self.eval_seconds = seconds if first else 0.5 * (self.eval_seconds + seconds)
        if first:
            self.fit(session)

    def before_epoch_end(self, session, epoch_seconds: float) -> None:
        """After an epoch's training: measure it; when one more epoch and the last validation would not
        end within the budget, this epoch is the last (its validation then runs as the last one)."""
        self.epochs_timed += 1
        self.epoch_seconds = epoch_seconds if self.epoch_seconds is None else (
            self.epoch_seconds + (epoch_seconds - self.epoch_seconds) / self.epochs_timed)
        if self.step_seconds is None:  # an epoch shorter than the probe: time it whole
            self.step_seconds = epoch_seconds / max(1, self.steps_per_epoch)
        state = session.state
        if state.epoch >= session.config.train.epochs:
            return
        self.fit(session)  # from the epochs measured so far: a machine busier or freer than at the start
        train_cfg = session.config.train
        if state.epoch >= train_cfg.epochs:
            return
        # Another epoch is trained unless it would end past the budget by more than half an epoch
        # (the plan rounds to the nearest epoch; this catches a machine that slowed down).
        left = self.seconds - RESERVE_SECONDS - self.elapsed()
        if dist_utils.broadcast_object(left < 0.5 * self.epoch_seconds + self.eval_estimate()):
            apply_schedule(session, state.epoch, train_cfg.eval_every)
            session.logger.info(f"--time: ending after epoch {state.epoch}, {self.elapsed() / 60:.1f} of "
                                f"{self.seconds / 60:g} minutes used (another epoch would not fit)")

    # ----------------------------------------------------------------------------------------------
    # the fit

    def eval_estimate(self) -> float:
        if self.eval_seconds is not None:
            return self.eval_seconds
        return self.val_images * self.step_seconds / max(1, self.batch_size) * EVAL_COST

    def fit(self, session) -> None:
        """Sets the epochs (and evaluation interval) that end the run within the budget."""
        step_seconds = self.epoch_seconds / self.steps_per_epoch if self.epoch_seconds else self.step_seconds
        epoch_seconds = step_seconds * self.steps_per_epoch
        evaluation = self.eval_estimate()
        # What is left for training and the validations along the way: the last validation and
        # the reserve are kept back. Rounded to the nearest epoch: the run ends within half an
        # epoch of the budget, on either side.
        available = self.seconds - RESERVE_SECONDS - self.elapsed() - evaluation
        done = session.state.step / self.steps_per_epoch
        epochs = max(1, round(done + available / epoch_seconds))
        for _ in range(3):  # eval_every depends on the epochs, and the epochs on the validations
            eval_every = max(1, round(epochs / EVALUATIONS))
            per_epoch = epoch_seconds + evaluation / eval_every
            epochs = max(math.ceil(done) or 1, round(done + available / per_epoch))
        previous = session.config.train.epochs
        epochs, eval_every = dist_utils.broadcast_object((epochs, eval_every))  # one schedule on every rank
        apply_schedule(session, epochs, eval_every)
        if epochs != previous:
            session.logger.info(
                f"--time {self.seconds / 60:g} min: {epochs} epochs of {epoch_seconds:.1f} s, validation every "
                f"{eval_every} ({evaluation:.1f} s{'' if self.eval_seconds else ', estimated'}); "
                f"{self.elapsed():.0f} s used so far")


def apply_schedule(session, epochs: int, eval_every: int) -> None:
    """The session's config with these epochs and evaluation interval; the learning-rate schedule
    follows the new length from the current step on (its step count is kept)."""
    train_cfg = session.config.train.model_copy(update={"epochs": int(epochs), "eval_every": int(eval_every)})
    session.config = session.config.model_copy(update={"train": train_cfg})
    steps_per_epoch = session.steps_per_epoch
    session.scheduler.lr_lambdas = [lambda step: lr_factor(step, train_cfg, steps_per_epoch)
                                    for _ in session.scheduler.lr_lambdas]
    # The current step's rate under the new schedule (LambdaLR sets it at the next step otherwise).
    step = session.scheduler.last_epoch
    for group, base in zip(session.optimizer.param_groups, session.scheduler.base_lrs):
        group["lr"] = base * lr_factor(step, train_cfg, steps_per_epoch)
