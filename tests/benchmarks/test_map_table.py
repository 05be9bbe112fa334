"""tools/eval_map.py and benchmarks.map_table: tiny random-weight Faster R-CNN checkpoints on a
handful of synthetic images, plus one torchvision row."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.map_table import ROW_KEYS
from detect.config import config_to_dict, load_config
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.engine.checkpoint import save_checkpoint
from detect.models.build import build_model
from tests.conftest import load_tool

# resnet18 at 96..128 px with 4 proposals per image (its per-RoI head is res5): about 0.1 s a forward on a CPU.
TINY_OVERRIDES = ["input.min_size=96", "input.max_size=128", "model.anchors.sizes=[16,32,64]",
                  "model.rpn.pre_nms_top_n_test=200", "model.rpn.post_nms_top_n_test=4",
                  "model.roi_heads.detections_per_img=20", "model.roi_heads.score_threshold=0.0",
                  "data.num_workers=0", "eval.batch_size=2"]

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """(data root, two checkpoint paths): the same tiny model with different random weights."""
    folder = tmp_path_factory.mktemp("eval_map")
    root = folder / "shapes"
    generate_synthetic(root, format="voc", num_images=10, image_size=128, seed=3, val_fraction=0.5)
    overrides = TINY_OVERRIDES + [f"data.root={root}"]
    config = load_config("synthetic_faster_rcnn", overrides)
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(config.model, config.input, len(SYNTHETIC_CLASSES))
        state = {"model": model.state_dict(), "config": config_to_dict(config),
                 "class_names": list(SYNTHETIC_CLASSES), "optimizer": None, "scheduler": None,
                 "scaler": None, "ema": None, "epoch": 1, "step": 1, "batch_in_epoch": 0,
                 "best_metric": None, "nonfinite_skipped": 0, "rng": None}
        checkpoints.append(save_checkpoint(state, folder / f"model{seed}.pt"))
    return root, checkpoints


def _finite_positive(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def test_table_and_json_for_two_checkpoints_and_torchvision(tiny_setup, tmp_path, capsys):
    root, checkpoints = tiny_setup
    out_json = tmp_path / "bench.json"
    code = load_tool("eval_map").main([str(checkpoints[0]), str(checkpoints[1]), "--device", "cpu",
                             "--json", str(out_json),
                             "--torchvision", "fasterrcnn_mobilenet_v3_large_320_fpn", "--torchvision", "peer",
                             "--max-images", "4",
                             "--latency-images", "3", "--model-images", "4", "--warmup", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = [line for line in captured.out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # header, rule, one row per model
    assert "VOC07 mAP" in table[0] and "img/s model" in table[0] and "p95 ms (b1)" in table[0]
    assert str(checkpoints[0]) in table[2] and str(checkpoints[1]) in table[3]
    assert "torchvision fasterrcnn_mobilenet_v3_large_320_fpn (random weights)" in table[4]
    assert "torchvision peer (random weights)" in table[5]
    gpu_column = [cell.strip() for cell in table[0].split("|")].index("peak GPU MiB")
    assert all(line.split("|")[gpu_column].strip() == "-" for line in table[2:])  # no GPU memory on a CPU
    assert table[2].rstrip(" |").endswith("1.00x")  # each row's model-only speed over the first row's
    report = json.loads(out_json.read_text())
    assert {"config", "split", "num_images", "batch_size", "device", "precision", "rows"} <= set(report)
    assert report["split"] == "val" and report["num_images"] == 4 and report["precision"] == "fp32"
    for row in report["rows"]:
        assert set(row) == set(ROW_KEYS) and row["num_images"] == 4
        for key in ("images_per_s_end_to_end", "images_per_s_model", "latency_ms_p50", "latency_ms_p95"):
            assert _finite_positive(row[key]), (row["name"], key, row[key])
        assert row["latency_ms_p95"] >= row["latency_ms_p50"]
        for key in ("voc07_map", "voc12_map", "coco_ap", "coco_ap50"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0
        assert row["peak_gpu_mib"] is None
        assert set(row["voc07_ap"]) == set(SYNTHETIC_CLASSES)
    assert report["rows"][0]["num_params"] == report["rows"][1]["num_params"]  # same architecture
    assert [row["kind"] for row in report["rows"]] == ["checkpoint", "checkpoint", "torchvision", "torchvision"]


def test_missing_checkpoint_is_a_one_line_error(tiny_setup, tmp_path, capsys):
    _, checkpoints = tiny_setup
    missing = tmp_path / "nope.pt"
    code = load_tool("eval_map").main([str(checkpoints[0]), str(missing), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"error: {missing}: model file not found"


def test_unknown_torchvision_model_is_a_one_line_error(tiny_setup, capsys):
    _, checkpoints = tiny_setup
    code = load_tool("eval_map").main([str(checkpoints[0]), "--device", "cpu", "--torchvision", "yolo_v99"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "yolo_v99" in err[0] and "fasterrcnn_resnet50_fpn" in err[0]


def test_data_from_config_and_split(tiny_setup, tmp_path, capsys):
    root, checkpoints = tiny_setup
    out_json = tmp_path / "bench.json"
    args = [str(checkpoints[0]), "--config", "synthetic_faster_rcnn", "--split", "train", "--device", "cpu",
            "--max-images", "2", "--batch-size", "1", "--model-images", "1", "--latency-images", "1",
            "--warmup", "0", "--json", str(out_json)]
    for override in [f"data.root={root}", "data.num_workers=0"]:
        args += ["--set", override]
    assert load_tool("eval_map").main(args) == 0, capsys.readouterr().err
    report = json.loads(out_json.read_text())
    assert (report["config"], report["split"], report["num_images"], report["batch_size"]) == \
        ("synthetic_faster_rcnn", "train", 2, 1)
    assert report["rows"][0]["num_images"] == 2 and _finite_positive(report["rows"][0]["images_per_s_model"])


def test_the_tool_finishes_with_loader_workers_after_the_main_process_resized_large_images(tmp_path):
    """The OpenCV thread pool and fork: the model-only pass resizes 640-pixel images in the main
    process (OpenCV's pool starts), then the end-to-end pass forks loader workers. Before the fork
    hook (detect/data/opencv_fork.py) every worker hung in cv2.setNumThreads; now the tool ends."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    root = tmp_path / "shapes"
    generate_synthetic(root, format="voc", num_images=4, image_size=640, seed=3, val_fraction=0.5)
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("data.num_workers")]
    config = load_config("synthetic_faster_rcnn", overrides + [f"data.root={root}", "data.num_workers=2"])
    model = build_model(config.model, config.input, len(SYNTHETIC_CLASSES))
    checkpoint = save_checkpoint({"model": model.state_dict(), "config": config_to_dict(config),
                                  "class_names": list(SYNTHETIC_CLASSES)}, tmp_path / "tiny.pt")
    out_json = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_ALBUMENTATIONS_UPDATE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tools" / "eval_map.py"), str(checkpoint), "--device", "cpu",
         "--model-images", "2", "--latency-images", "1", "--warmup", "0", "--threads", "1", "--json", str(out_json)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=150)  # about 15 s on 2 busy cores; a hang never ends
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the hung workers too
        process.communicate()
        raise AssertionError("tools/eval_map.py did not finish in 150 s (loader workers hung?)") from None
    assert process.returncode == 0, stderr
    row = json.loads(out_json.read_text())["rows"][0]
    assert row["num_images"] == 2 and _finite_positive(row["images_per_s_end_to_end"])


def test_a_run_on_yolo_data_with_a_drawn_validation_part_is_measured_on_that_part(tmp_path, capsys):
    """The data forms of docs/data.md reach the tool too: YOLO labels, a validation part drawn from the
    training images (data.val_fraction), read back from the run's splits/ lists."""
    from tests.engine.test_eval_checks import TINY, run, sets

    root = tmp_path / "yolo"
    generate_synthetic(root, format="yolo", num_images=12, image_size=64, seed=3, val_fraction=0.0)
    run_dir = tmp_path / "run"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *sets("data.format=yolo", f"data.root={root}", "data.val_fraction=0.25", *TINY)], capsys)
    assert code == 0, err
    val_ids = (run_dir / "splits" / "val.txt").read_text().split()
    assert len(val_ids) == 3
    out_json = tmp_path / "bench.json"
    args = [str(run_dir / "last.pt"), "--device", "cpu", "--batch-size", "1", "--model-images", "1",
            "--latency-images", "1", "--warmup", "0", "--json", str(out_json)]
    assert load_tool("eval_map").main(args) == 0, capsys.readouterr().err
    report = json.loads(out_json.read_text())
    assert report["split"] == "val" and report["num_images"] == 3 and report["rows"][0]["num_images"] == 3


def test_a_row_per_backend_and_exported_file(tiny_setup, tmp_path, capsys):
    """A checkpoint on each --backend, and its exported ONNX file on onnxruntime: each row names its
    backend and precision, and the two runtimes of one exported graph score alike. (This random model's
    scores are near-ties, which eager PyTorch may break otherwise: the parity of each backend with
    PyTorch is tested on models with spread scores, tests/infer/test_openvino_backend.py.)"""
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    pytest.importorskip("openvino", reason="needs the openvino extra")
    from detect.export import export_onnx

    _, checkpoints = tiny_setup
    exported = tmp_path / "model.onnx"
    export_onnx(checkpoints[0], exported, dynamic_batch=True)
    out_json = tmp_path / "bench.json"
    code = load_tool("eval_map").main([str(checkpoints[0]), str(exported), "--backend", "torch", "--backend",
                                       "openvino", "--device", "cpu", "--json", str(out_json), "--max-images", "4",
                                       "--latency-images", "2", "--model-images", "4", "--warmup", "1"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out_json.read_text())["rows"]
    assert [(row["backend"], row["precision"]) for row in rows] == [
        ("torch", "fp32"), ("openvino", "fp32"), ("onnxruntime", "fp32")]
    assert rows[0]["name"].endswith("(torch, fp32)") and rows[2]["source"] == str(exported)
    assert rows[1]["voc07_map"] == pytest.approx(rows[2]["voc07_map"], abs=1e-6)
    assert rows[1]["coco_ap"] == pytest.approx(rows[2]["coco_ap"], abs=1e-3)
