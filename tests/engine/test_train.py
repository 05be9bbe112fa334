"""The training loop on test doubles: run folder, exact resume, non-finite loss, Ctrl-C."""

from __future__ import annotations

import json

import pytest
import torch

from detect.checkpoints import load_checkpoint
from detect.data.coco import CategoryMap
from detect.data.loader import TransformedDataset
from detect.engine.run import dataset_category_ids, dataset_class_names, run_training
from detect.engine.train_state import NonFiniteLossError
from detect.errors import CheckpointError
from tests.engine import doubles


def train(config, out, loaders=doubles.build_loaders, model=doubles.build_model, **kwargs):
    """run_training on the doubles (`loaders` and `model` build them, see doubles.engine_on)."""
    with doubles.engine_on(loaders, model):
        return run_training(config, output_dir=out, device="cpu", **kwargs)


def test_run_folder_has_everything(tmp_path):
    run_dir = train(doubles.tiny_config(epochs=2, ema=True, ema_decay=0.9), tmp_path / "run")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "train.log", "metrics.jsonl", "last.pt", "best.pt"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds.count("eval") == 2 and kinds.count("epoch") == 2 and "train" in kinds
    train_record = next(r for r in records if r["type"] == "train")
    assert {"loss", "loss_box", "loss_cls", "lr", "images_per_s", "step"} <= set(train_record)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 8  # 16 images / batch 4, 2 epochs
    assert checkpoint["class_names"] == doubles.CLASS_NAMES
    assert checkpoint["category_ids"] is None  # not COCO data
    assert checkpoint["config"]["name"] == "tiny" and checkpoint["ema"] is not None
    assert set(checkpoint["rng"]) == {"python", "numpy", "torch", "cuda"}
    best = load_checkpoint(run_dir / "best.pt")
    evals = [r for r in records if r["type"] == "eval"]
    assert best["best_metric"] == pytest.approx(max(r["map"] for r in evals))
    log = (run_dir / "train.log").read_text()
    assert "epoch 2/2: loss" in log and "val mAP@0.5 (voc07)" in log
    assert "| red " in log and "| green " in log and "**mAP**" in log  # the per-class table at the end
    assert not list(run_dir.glob(".*tmp*"))


def test_category_ids_come_from_the_dataset_behind_the_loader():
    class CocoLike(torch.utils.data.Dataset):
        class_names = ["cat", "dog"]
        category_map = CategoryMap([17, 18])

        def __len__(self):
            return 2

    wrapped = torch.utils.data.Subset(TransformedDataset(CocoLike(), transforms=None), [0, 1])
    assert dataset_category_ids(torch.utils.data.DataLoader(wrapped)) == [17, 18]
    assert dataset_class_names(torch.utils.data.DataLoader(wrapped)) == ["cat", "dog"]
    plain = TransformedDataset(torch.utils.data.TensorDataset(torch.zeros(2)), transforms=None)
    assert dataset_category_ids(torch.utils.data.DataLoader(plain)) is None


def _assert_same_training_state(a: dict, b: dict):
    assert (a["epoch"], a["step"], a["batch_in_epoch"]) == (b["epoch"], b["step"], b["batch_in_epoch"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == pytest.approx(
        [g["lr"] for g in b["optimizer"]["param_groups"]], rel=1e-12)
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=1e-6, atol=1e-7)
    for index, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(state["momentum_buffer"], b["optimizer"]["state"][index]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("stop_at", [6, 4])  # mid-epoch (4 steps per epoch) and at an epoch's end
def test_interrupt_and_resume_continue_exactly(tmp_path, stop_at):
    config = doubles.tiny_config(epochs=3, scheduler="multistep", milestones=[2], warmup_iters=5)
    straight = load_checkpoint(train(config, tmp_path / "straight") / "last.pt")
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", loaders=doubles.interrupted_loaders(after=stop_at))
    interrupted = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert interrupted["step"] == stop_at
    assert interrupted["scheduler"]["last_epoch"] == stop_at
    resumed = load_checkpoint(train(config, tmp_path / "cut", resume="auto") / "last.pt")
    _assert_same_training_state(straight, resumed)
    log = (tmp_path / "cut" / "train.log").read_text()
    assert f"interrupted at step {stop_at}" in log and "resumed from" in log


def test_ctrl_c_inside_an_accumulation_group_replays_the_group(tmp_path):
    config = doubles.tiny_config(epochs=2, accumulate=2, warmup_iters=2)
    straight = load_checkpoint(train(config, tmp_path / "straight") / "last.pt")

    def interrupted_model(config, num_classes):
        model = doubles.TinyDetector(num_classes)
        model.interrupt_at_call = 6  # epoch 2, the second batch of its first group
        return model

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", model=interrupted_model)
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (cut["epoch"], cut["step"], cut["batch_in_epoch"]) == (1, 2, 0)
    resumed = load_checkpoint(train(config, tmp_path / "cut", resume="auto") / "last.pt")
    _assert_same_training_state(straight, resumed)


def test_nonfinite_loss_stops_naming_step_and_images(tmp_path, monkeypatch):
    def nan_model(config, num_classes):
        model = doubles.TinyDetector(num_classes)
        model.nan_at_call = 3
        return model

    with pytest.raises(NonFiniteLossError) as raised:
        train(doubles.tiny_config(), tmp_path, model=nan_model)
    message = str(raised.value)
    assert "\n" not in message
    assert "non-finite loss at step 2 " in message and "loss_box=nan" in message
    assert "image ids: img" in message and message.count("img") == 4


def test_nonfinite_loss_skip_counts_and_continues(tmp_path):
    def nan_model(config, num_classes):
        model = doubles.TinyDetector(num_classes)
        model.nan_at_call = 3
        return model

    run_dir = train(doubles.tiny_config(epochs=1, nonfinite="skip"), tmp_path, model=nan_model)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["nonfinite_skipped"] == 1 and checkpoint["step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    run_dir = train(
        doubles.tiny_config(epochs=1, accumulate=2, clip_grad_norm=1.0, optimizer="adamw", channels_last=True),
        tmp_path)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["step"] == 2 and checkpoint["scheduler"]["last_epoch"] == 2


def test_resume_with_another_model_is_a_one_line_error(tmp_path):
    train(doubles.tiny_config(epochs=1), tmp_path)

    def wider_model(config, num_classes):
        return doubles.TinyDetector(num_classes + 1)

    with pytest.raises(CheckpointError) as raised:
        train(doubles.tiny_config(epochs=2), tmp_path, model=wider_model, resume="auto")
    assert "does not fit this config's model" in str(raised.value) and "\n" not in str(raised.value)
