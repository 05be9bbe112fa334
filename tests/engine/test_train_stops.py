"""How training stops and goes on: an interrupted final evaluation, a kill while a checkpoint is
written, metrics.jsonl after a kill -9 and resume, and SIGTERM to the whole process group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from detect.checkpoints import load_checkpoint
from detect.engine import train_state
from detect.engine.checkpoint import save_checkpoint
from tests.conftest import REPO_ROOT
from tests.engine import doubles
from tests.engine.test_train import _assert_same_training_state, train


def records(run_dir, kind=None) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if kind is None or r["type"] == kind]


class InterruptedOnce:
    """A loader whose first pass is a Ctrl-C (or SIGTERM) at its start."""

    def __init__(self, loader) -> None:
        self.loader, self.interrupted = loader, False

    def __iter__(self):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self):
        return self.loader.dataset


def test_an_interrupt_during_the_final_evaluation_is_not_lost(tmp_path):
    config = doubles.tiny_config(epochs=1)

    def loaders(config, distributed):
        train_loader, val_loader = doubles.build_loaders(config, distributed)
        return train_loader, InterruptedOnce(val_loader)

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, loaders=loaders)
    log = (tmp_path / "train.log").read_text()
    assert "interrupted at step 4 (after epoch 1's training, before its evaluation and checkpoints were done)" in log
    assert "epoch 2" not in log and not (tmp_path / "best.pt").exists()
    cut = load_checkpoint(tmp_path / "last.pt")
    assert (cut["epoch"], cut["step"], cut["epoch_end_due"]) == (1, 4, True)

    train(config, tmp_path, resume="auto")
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and best["best_metric"] is not None and not best["epoch_end_due"]
    assert not load_checkpoint(tmp_path / "last.pt")["epoch_end_due"]
    assert [r["epoch"] for r in records(tmp_path, "eval")] == [1]
    assert [r["epoch"] for r in records(tmp_path, "epoch")] == [1]


class Killed(BaseException):
    """kill -9 of the process: nothing after it runs (no handler, no `finally` that cleans up)."""


def test_a_kill_while_the_first_last_pt_is_written_keeps_the_epoch(tmp_path, monkeypatch):
    config = doubles.tiny_config(epochs=2)
    straight = load_checkpoint(train(config, tmp_path / "straight") / "last.pt")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()

    def killed_while_writing_last(state, path):
        if path.name == "last.pt":
            (path.parent / f".last.pt.tmp{dead_pid}").write_bytes(b"the first half of a checkpoint")
            raise Killed
        return save_checkpoint(state, path)

    run_dir = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(train_state, "save_checkpoint", killed_while_writing_last)
        with pytest.raises(Killed):
            train(config, run_dir)
    assert not (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists()

    train(config, run_dir, resume="auto")
    assert "resumed from " + str(run_dir / "best.pt") + ": epoch 1, step 4" in (run_dir / "train.log").read_text()
    _assert_same_training_state(straight, load_checkpoint(run_dir / "last.pt"))
    assert not list(run_dir.glob(".*.tmp*"))


def test_ctrl_c_while_best_pt_is_written_evaluates_again_on_resume(tmp_path, monkeypatch):
    config = doubles.tiny_config(epochs=1)
    calls = []

    def interrupted_best_pt(state, path):
        calls.append(path.name)
        if calls == ["best.pt"]:
            raise KeyboardInterrupt  # what save_checkpoint lets through: its temporary is removed
        return save_checkpoint(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(train_state, "save_checkpoint", interrupted_best_pt)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path)
    cut = load_checkpoint(tmp_path / "last.pt")
    assert cut["epoch_end_due"] and cut["best_metric"] is None and not (tmp_path / "best.pt").exists()
    train(config, tmp_path, resume="auto")
    assert load_checkpoint(tmp_path / "best.pt")["best_metric"] == pytest.approx(records(tmp_path, "eval")[0]["map"])
    assert len(records(tmp_path, "eval")) == 1


def test_metrics_do_not_repeat_the_steps_a_resume_replays(tmp_path):
    config = doubles.tiny_config(epochs=2, log_every=1)
    straight = records(train(config, tmp_path / "straight"))
    run_dir = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, loaders=doubles.interrupted_loaders(after=3))
    shutil.copy(run_dir / "last.pt", tmp_path / "step3.pt")
    train(config, run_dir, resume="auto")  # to the end, then a kill -9 "loses" every later last.pt:
    shutil.copy(tmp_path / "step3.pt", run_dir / "last.pt")
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"type": "train", "ste')  # a line the kill cut short
    train(config, run_dir, resume=str(run_dir / "last.pt"))
    resumed = records(run_dir)
    assert [(r["type"], r["step"]) for r in resumed] == [(r["type"], r["step"]) for r in straight]
    assert [r["loss"] for r in resumed if r["type"] == "train"] == pytest.approx(
        [r["loss"] for r in straight if r["type"] == "train"], rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# SIGTERM to the process group, through the CLI with real DataLoader workers


TINY_RUN = ["data.synth.num_images=40", "data.synth.image_size=64", "data.synth.val_fraction=0.1",
            "data.num_workers=2", "train.epochs=1", "train.batch_size=1", "train.log_every=1",
            "input.min_size=64", "input.max_size=64", "model.anchors.sizes=[16,32]",
            "model.rpn.post_nms_top_n_test=20"]


def wait_for_steps(run_dir, process, steps: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        if (run_dir / "metrics.jsonl").is_file() and any(
                r["type"] == "train" and r["step"] >= steps for r in records(run_dir)):
            return
        time.sleep(0.2)
    raise AssertionError(f"training did not reach step {steps} (exit code {process.poll()})")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_a_stop_signal_to_the_process_group_stops_like_one_to_the_trainer(tmp_path, stop_signal):
    """`timeout` and schedulers send SIGTERM to the whole group, a terminal's Ctrl-C sends SIGINT to it."""
    run_dir = tmp_path / "run"
    sets = [arg for value in [f"data.root={tmp_path / 'shapes'}", *TINY_RUN] for arg in ("--set", value)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_ALBUMENTATIONS_UPDATE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "detect", "train", "--config", "synthetic_faster_rcnn", "--device", "cpu",
         "--out", str(run_dir), *sets],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as under `timeout` or a scheduler
        # Ctrl-C reaches it as in a terminal, also when this test runs where SIGINT is ignored (a
        # background job of a non-interactive shell), which Python would otherwise inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_steps(run_dir, process, steps=2)
        os.killpg(process.pid, stop_signal)  # the trainer and its loader workers at once
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr
    log = (run_dir / "train.log").read_text()
    assert "interrupted at step" in log and f"wrote {run_dir / 'last.pt'}" in log
    cut = load_checkpoint(run_dir / "last.pt")
    assert cut["epoch"] == 0 and cut["batch_in_epoch"] >= 2 and cut["step"] == cut["batch_in_epoch"]
    deadline = time.monotonic() + 30  # the workers end with the trainer
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("processes of the run's group are still alive")
