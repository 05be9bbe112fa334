"""tools/compare_torchvision_frcnn.py: both detectors train through the real engine (tiny in-memory data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from detect.config import Config
from tests.engine import doubles

TOOL = Path(__file__).resolve().parents[2] / "tools" / "compare_torchvision_frcnn.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("compare_torchvision_frcnn", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_models_train_and_evaluate_through_the_engine(tmp_path):
    tool = _load_tool()
    torch.manual_seed(0)
    config = Config.model_validate({
        "name": "compare",
        "input": {"min_size": 32, "max_size": 32},
        "model": {"backbone": "resnet18", "roi_pool": "roi_align", "roi_output_size": 4,
                  "anchors": {"sizes": [8, 16]},
                  "rpn": {"batch_size_per_image": 32, "pre_nms_top_n_train": 50, "post_nms_top_n_train": 16,
                          "pre_nms_top_n_test": 50, "post_nms_top_n_test": 8},
                  "roi_heads": {"batch_size_per_image": 8}},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr": 1e-4, "warmup_iters": 0, "amp": False},
        "eval": {"batch_size": 4},
    })
    loaders = lambda cfg, distributed: doubles.build_loaders(cfg, distributed, num_images=8)  # noqa: E731
    summary = tool.train_both(config, tmp_path, device="cpu", build_loaders_fn=loaders)
    for name in ("ours", "torchvision"):
        assert (Path(summary[name]["run_dir"]) / "metrics.jsonl").is_file()
        assert summary[name]["last_map"] is not None and 0.0 <= summary[name]["last_map"] <= 1.0
