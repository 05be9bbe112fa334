"""`detect data stats`: boxes at the model's input size, per-class counts, the anchor fit and its warning."""

from __future__ import annotations

import numpy as np

from detect.config import DataConfig, load_config
from detect.data.build import build_dataset
from detect.data.stats import SplitBoxes, size_buckets, split_boxes
from detect.data.stats_report import fit_warning
from detect.models.anchor_fit import AnchorFit
from tests.engine.test_eval_checks import run, sets


def test_boxes_are_scaled_as_the_eval_pipeline_resizes(voc_root):
    """64x48 images, keep_ratio 96 / 1000: every box doubles; inputs padded to 32 give 96 x 128."""
    cfg = load_config("synthetic_faster_rcnn", ["input.min_size=96", "input.max_size=1000"])
    dataset = build_dataset(DataConfig(format="voc", root=str(voc_root)), "train")
    boxes = split_boxes(dataset, cfg.input, "train")
    originals = np.concatenate([sample.boxes for sample in dataset.samples])
    np.testing.assert_allclose(boxes.boxes, originals * 2)
    assert boxes.input_sizes == [(96, 128)] * 3 and boxes.num_images == 3
    assert boxes.images_per_class.tolist() == [2, 2]  # cat in a and b; dog in a and b
    assert size_buckets(np.array([[0, 0, 31, 32], [0, 0, 32, 32], [0, 0, 96, 97]], np.float32)).tolist() == [0, 1, 2]


def test_a_class_out_of_reach_is_warned_even_when_the_split_fits():
    """19 large cats that fit and one small dog that does not: 95 % in all, but the dog is out of reach."""
    labels = np.array([1] * 19 + [2])
    boxes = SplitBoxes("train", ["cat", "dog"], 20, np.array([19, 1]), labels,
                       np.tile(np.array([[0, 0, 100, 100]], np.float32), (20, 1)), np.arange(20),
                       np.zeros(20, bool), [(128, 128)] * 20)
    best_iou = np.where(labels == 1, 0.9, 0.2).astype(np.float32)
    fit = AnchorFit(best_iou, np.where(labels == 1, 1.0, 0.3).astype(np.float32), 0.7, "model.anchors.sizes",
                    "RPN anchors")
    assert fit_warning(boxes, fit) == ("dog (0%): under 50% of its boxes reach IoU 0.7 with one of the RPN anchors "
                                       "in 'train'; change model.anchors.sizes")
    fit.best_iou[-1] = 0.7
    assert fit_warning(boxes, fit) is None


def stats(capsys, tmp_path, config, *overrides, plots=None):
    data = sets(f"data.root={tmp_path / 'shapes'}", "data.synth.num_images=40", "data.synth.image_size=128",
                *overrides)
    return run(["data", "stats", "--config", config, "--split", "train", *data,
                *(["--plots", str(plots)] if plots else [])], capsys)


def test_the_ssd_main_job_fits_the_shapes_it_trains_on(tmp_path, capsys):
    code, out, err = stats(capsys, tmp_path, "synthetic_ssd")
    assert code == 0, err
    assert "| **all**" in out and "anchor fit: default boxes reach IoU >= 0.35" in out and "warning" not in out


def test_anchors_far_too_large_get_the_warning_naming_the_keys(tmp_path, capsys):
    code, out, err = stats(capsys, tmp_path, "synthetic_faster_rcnn", "model.anchors.sizes=[600, 900, 1200, 1500]")
    assert code == 0, err
    warning = out.split("warning: ")[1]
    assert "below 90%" in warning and "mostly smaller than the RPN anchors" in warning
    assert "model.anchors.sizes" in warning and "input.min_size" in warning
    code, out, err = stats(capsys, tmp_path, "synthetic_ssd", "model.ssd.first_scale=0.9", "model.ssd.min_scale=0.95",
                           "model.ssd.max_scale=1.0")
    assert code == 0, err
    assert "warning: " in out and "model.ssd.min_scale" in out


def test_plots_are_written(tmp_path, capsys):
    code, out, err = stats(capsys, tmp_path, "synthetic_ssd", plots=tmp_path / "plots")
    assert code == 0, err
    for name in ("sizes_train.png", "best_iou_train.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
