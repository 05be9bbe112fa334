"""tools/bench_data.py: the repeated dataset and a short run of the real pipeline on synthetic data."""

from __future__ import annotations

import pytest

from tests.conftest import load_tool


@pytest.fixture(scope="module")
def bench_data():
    return load_tool("bench_data")


def test_repeated_lists_the_dataset_again_with_its_sizes(bench_data):
    class Raw:
        class_names = ["a"]
        samples = ["s0", "s1", "s2"]

        def __len__(self):
            return 3

        def __getitem__(self, index):
            return f"item{index}"

    repeated = bench_data.Repeated(Raw(), 4)
    assert len(repeated) == 12 and repeated[7] == "item1" and repeated.class_names == ["a"]
    assert repeated.samples == Raw.samples * 4  # annotated sizes for aspect-ratio grouping


def test_runs_on_synthetic_data(bench_data, tmp_path, capsys):
    bench_data.main(["--config", "synthetic_ssd", "--set", f"data.root={tmp_path / 'shapes'}",
                     "--set", "data.synth.num_images=10", "--set", "data.synth.image_size=64",
                     "--set", "input.size=64", "--workers", "0", "--batch-size", "4",
                     "--num-batches", "3", "--repeat", "3"])
    printed = capsys.readouterr().out
    assert "12 images in" in printed and "6 batches per epoch" in printed  # 8 train images x 3 / 4


@pytest.mark.parametrize("normalize_on, dtype", [("device", "torch.uint8"), ("loader", "torch.float32")])
def test_reports_the_batch_dtype_and_pinning(bench_data, tmp_path, capsys, normalize_on, dtype):
    import torch

    bench_data.main(["--config", "synthetic_ssd", "--set", f"data.root={tmp_path / 'shapes'}",
                     "--set", "data.synth.num_images=10", "--set", "data.synth.image_size=64",
                     "--set", "input.size=64", "--set", f"input.normalize_on={normalize_on}", "--workers", "0",
                     "--batch-size", "4", "--num-batches", "1", "--pin"])
    captured = capsys.readouterr()
    assert f"{dtype} (" in captured.out and f"normalize_on {normalize_on}" in captured.out
    pinned = torch.cuda.is_available()
    assert f"pinned {'yes' if pinned else 'no'}" in captured.out
    assert pinned or "--pin: no CUDA device" in captured.err
