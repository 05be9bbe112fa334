"""Training and evaluation on the real pipeline's uint8 batches (input.normalize_on: device) give what
the float32 batches normalized in the loader give: tiny synthetic SSD, CPU."""

from __future__ import annotations

import json

import pytest
import torch

from detect.config import load_config
from detect.engine import run
from detect.engine.run import build_loaders, run_training
from detect.evaluation.eval_command import evaluate_checkpoint
from detect.evaluation.evaluate import run_detector
from detect.models.build import build_model
from tests.engine import doubles

TINY_SSD = [
    "data.synth.num_images=8", "data.synth.image_size=72", "data.synth.val_fraction=0.25", "data.num_workers=0",
    "input.size=64", "model.ssd.aspect_ratios=[[2.0],[2.0],[2.0]]",
    "train.epochs=1", "train.batch_size=3", "train.warmup_iters=1", "train.log_every=1", "eval.batch_size=2",
]


def train_tiny_ssd(tmp_path, normalize_on: str):
    """One epoch (2 steps) and an evaluation; returns (run folder, the dtype of the batches trained on)."""
    config = load_config("synthetic_ssd", [f"data.root={tmp_path / 'shapes'}", f"input.normalize_on={normalize_on}",
                                           *TINY_SSD])
    seen_dtypes = set()

    def loaders(config, distributed):
        train_loader, val_loader = build_loaders(config, distributed)
        seen_dtypes.add(next(iter(train_loader))[0].dtype)
        return train_loader, val_loader

    with doubles.engine_on(loaders, run.build_starting_model):  # the real model, on the real loaders watched
        run_dir = run_training(config, tmp_path / normalize_on, device="cpu")
    return run_dir, seen_dtypes


def records(run_dir, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["type"] == kind]


def test_uint8_batches_train_and_evaluate_like_float_ones(tmp_path):
    device_run, device_dtypes = train_tiny_ssd(tmp_path, "device")
    loader_run, loader_dtypes = train_tiny_ssd(tmp_path, "loader")
    assert device_dtypes == {torch.uint8} and loader_dtypes == {torch.float32}

    device_steps, loader_steps = records(device_run, "train"), records(loader_run, "train")
    assert len(device_steps) == len(loader_steps) == 2
    for ours, reference in zip(device_steps, loader_steps):
        assert ours["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    device_eval, loader_eval = records(device_run, "eval")[-1], records(loader_run, "eval")[-1]
    assert device_eval["map"] == pytest.approx(loader_eval["map"], abs=1e-4)

    # `detect eval` of the checkpoint (its own uint8 pipeline) repeats the evaluation during training.
    results = evaluate_checkpoint(device_run / "best.pt", None, [], None, "voc07", device="cpu").results
    assert results["voc07"]["map"] == pytest.approx(device_eval["map"], abs=1e-6)


def test_detections_from_uint8_and_float_batches_agree(tmp_path):
    """run_detector on the validation split through both pipelines, the same (random-weight) model."""
    config = load_config("synthetic_ssd", [f"data.root={tmp_path / 'shapes'}", *TINY_SSD])
    model = build_model(config.model, config.input, num_classes=5).eval()
    mean, std = config.input.mean, config.input.std
    _, uint8_val = build_loaders(config, distributed=False)
    float_config = config.model_copy(deep=True)
    float_config.input.normalize_on = "loader"
    _, float_val = build_loaders(float_config, distributed=False)
    device = torch.device("cpu")
    pairs = zip(run_detector(model, uint8_val, device, mean=mean, std=std), run_detector(model, float_val, device))
    compared = 0
    for (uint8_found, _), (float_found, _) in pairs:
        for ours, reference in zip(uint8_found, float_found):
            assert len(ours["scores"]) == len(reference["scores"]) > 0
            torch.testing.assert_close(ours["scores"].sort().values, reference["scores"].sort().values,
                                       atol=1e-4, rtol=0)
            compared += 1
    assert compared == 2
