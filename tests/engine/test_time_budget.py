"""train.time_minutes: the schedule fitted to the budget from measured step and validation times, the
learning rate re-based on the fitted length, the last epoch chosen so the run ends within the budget,
and a resume that keeps the fitted schedule."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from detect.config import Config
from detect.engine.checkpoint import save_checkpoint
from detect.engine.optim import build_scheduler, lr_factor
from detect.engine.session import TrainState
from detect.engine.time_budget import TimeBudget, apply_schedule
from tests.engine.test_eval_checks import TINY, run, sets


class Said:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def fake_session(epochs=40, steps_per_epoch=10, step=0):
    config = Config().model_copy(update={"train": Config().train.model_copy(update={
        "epochs": epochs, "eval_every": 5, "scheduler": "cosine", "warmup_iters": 0, "time_minutes": 2.0})})
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = build_scheduler(optimizer, config.train, steps_per_epoch)
    for _ in range(step):
        optimizer.step()
        scheduler.step()
    return SimpleNamespace(config=config, optimizer=optimizer, scheduler=scheduler, steps_per_epoch=steps_per_epoch,
                           state=TrainState(step=step, epoch=step // steps_per_epoch), logger=Said())


def test_the_fit_plans_the_epochs_that_fill_the_budget():
    """120 s, 10 s used, 1 s a step of 10 steps an epoch, 2 s a validation: about 9 epochs, each
    validation in the plan counted."""
    session = fake_session(step=10)
    budget = TimeBudget(120.0, time.perf_counter() - 10.0, steps_per_epoch=10, val_images=40, batch_size=16)
    budget.step_seconds, budget.eval_seconds = 1.0, 2.0
    budget.fit(session)
    train = session.config.train
    # 120 - 4 reserved - 10 used - 2 last validation = 104 s; (10 s + 2 s / eval_every 2) an epoch
    assert (train.epochs, train.eval_every) == (10, 2)
    assert "--time 2 min: 10 epochs of 10.0 s, validation every 2" in session.logger.lines[0]


def test_the_schedule_follows_the_fitted_length():
    session = fake_session(epochs=40, step=10)
    apply_schedule(session, 5, 1)
    assert session.config.train.epochs == 5
    assert session.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(10, session.config.train, 10))
    for _ in range(40):
        session.optimizer.step()
        session.scheduler.step()
    assert session.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the decay completed


def test_each_epoch_end_fits_again_and_the_last_that_fits_ends_the_run():
    session = fake_session(epochs=10, step=50)
    session.state.epoch = 5
    budget = TimeBudget(120.0, time.perf_counter() - 104.0, steps_per_epoch=10, val_images=40, batch_size=16)
    budget.step_seconds, budget.eval_seconds = 1.0, 2.0
    budget.before_epoch_end(session, 10.0)  # 10 s left for training: one more epoch and its validation
    assert session.config.train.epochs == 6
    budget.started -= 6.0
    budget.before_epoch_end(session, 10.0)  # 4 s left: this epoch is the last
    assert session.config.train.epochs == 5
    assert session.logger.lines[-1].startswith("--time 2 min: 5 epochs of 10.0 s")


def test_a_timed_run_trains_its_fitted_schedule_and_its_resume_keeps_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
            *sets(f"data.root={tmp_path / 'shapes'}", *TINY, "train.time_minutes=0.12")]
    started = time.perf_counter()
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert time.perf_counter() - started < 60
    log = (run_dir / "train.log").read_text()
    assert "--time 0.12 min:" in log
    last = torch.load(run_dir / "last.pt", weights_only=False)
    fitted = last["config"]["train"]
    assert last["epoch"] == fitted["epochs"] and (run_dir / "best.pt").is_file()
    # The resume of a run stopped half way trains to the fitted epochs, not the config's.
    last["epoch"], last["step"] = 1, last["step"] // fitted["epochs"]
    save_checkpoint(last, run_dir / "last.pt")
    code, out, err = run([*args, "--resume", "auto"], capsys)
    assert code == 0, err
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == fitted["epochs"]
