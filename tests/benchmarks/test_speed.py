"""benchmarks.speed: synthetic batches padded as the loader pads them, timed steps and their summary."""

from __future__ import annotations

import pytest
import torch

from benchmarks.speed import make_batches, summarise, time_steps


def test_batches_are_padded_and_hold_several_boxes():
    batches = make_batches(2, 3, 100, 130, num_classes=5, vary_sizes=True, size_divisible=32, seed=0)
    assert len(batches) == 2
    for batch in batches:
        assert batch["images"].shape == (3, 3, 128, 160)
        sizes = batch["image_sizes"]
        assert sizes[0].tolist() == [100, 130] and (sizes[:, 0] == 100).all() and (sizes[:, 1] <= 130).all()
        for (h, w), image, target in zip(sizes.tolist(), batch["image_list"], batch["targets"]):
            assert image.shape == (3, h, w)
            assert 2 <= len(target["boxes"]) <= 8 and target["labels"].min() >= 1 and target["labels"].max() <= 5
            boxes = target["boxes"]
            assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (batch["images"][1:, :, :, 130:] == 0).all()  # padding


def test_time_steps_counts_warmup_and_repeats():
    calls = []
    times = time_steps(calls.append, [{"a": 1}, {"b": 2}], warmup=2, repeats=3, device=torch.device("cpu"))
    assert len(calls) == 5 and calls[1] == {"b": 2} and len(times) == 3 and all(t >= 0 for t in times)
    summary = summarise([3.0, 1.0, 2.0], batch_size=4)
    assert summary["ms_per_iter"] == 2.0 and summary["images_per_s"] == pytest.approx(2000.0)
