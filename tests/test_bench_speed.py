"""tools/bench_speed.py on the CPU with tiny models: JSON rows, shared weights, the same detections."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from benchmarks.shared_weights import copy_weights
from benchmarks.speed import make_batches
from detect.detections.padded import split_detections

ROOT = Path(__file__).resolve().parents[1]

# Tiny but complete: a ResNet-18 trunk, few anchors, RoIs and proposals, 2 images, 1 warm-up, 2 repeats.
# One thread: on a CPU shared with other jobs, torch's thread pool can run 20x slower than one thread.
TINY = ["--device", "cpu", "--dtype", "fp32", "--batch-size", "2", "--warmup", "1", "--repeats", "2", "--threads", "1"]
TINY_FASTER_RCNN = TINY + [
    "--model", "faster_rcnn_vgg16", "--image-size", "96", "128",
    "--set", "model.backbone=resnet18", "--set", "model.roi_pool=roi_align", "--set", "model.roi_output_size=4",
    "--set", "model.anchors.sizes=[16,32,64]", "--set", "model.roi_heads.batch_size_per_image=16",
    "--set", "model.rpn.pre_nms_top_n_train=300", "--set", "model.rpn.post_nms_top_n_train=64",
    "--set", "model.rpn.post_nms_top_n_test=16",
]
TINY_FPN = TINY + [
    "--model", "faster_rcnn_fpn", "--image-size", "96", "128", "--set", "model.backbone=resnet18_fpn",
    "--set", "model.roi_heads.batch_size_per_image=16", "--set", "model.rpn.pre_nms_top_n_train=100",
    "--set", "model.rpn.post_nms_top_n_train=64", "--set", "model.rpn.pre_nms_top_n_test=50",
    "--set", "model.rpn.post_nms_top_n_test=16",
]
TINY_MOBILENET = TINY + [
    "--model", "faster_rcnn_mobilenet320", "--image-size", "96", "128",
    "--set", "model.roi_heads.batch_size_per_image=16", "--set", "model.rpn.pre_nms_top_n_train=100",
    "--set", "model.rpn.post_nms_top_n_train=64",
]
TINY_SSD = TINY + [
    "--model", "ssd300", "--image-size", "160",
    "--set", "model.backbone=resnet18", "--set", "model.ssd.aspect_ratios=[[2],[2,3],[2,3],[2],[2]]",
    "--set", "model.ssd.top_k_per_class=20",
]


@pytest.fixture(scope="module")
def bench_speed():
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "tools" / "bench_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [TINY_FASTER_RCNN, TINY_FPN, TINY_SSD], ids=["faster_rcnn", "faster_rcnn_fpn", "ssd"])
def test_benchmark_writes_rows_for_both_modes(bench_speed, argv, tmp_path, capsys, one_thread):
    out = tmp_path / "speed.json"
    assert bench_speed.main(argv + ["--mode", "all", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("python tools/bench_speed.py")
    assert report["environment"]["torch"] == torch.__version__
    rows = report["rows"]
    graphs = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    assert [row["mode"] for row in rows] == ["infer", "train", *graphs]  # the exported graph's runtimes: CPU, fp32
    for row in rows:
        assert row["shared_weights"] is True
        assert row["batch_size"] == 2 and row["dtype"] == "fp32" and row["device"] == "cpu"
        for side in ("ours", "torchvision"):
            result = row[side]
            assert result["ms_per_iter"] > 0 and result["images_per_s"] > 0
            assert len(result["ms_all"]) == 2
            assert result["peak_mem_mib"] is None  # CUDA only
        assert row["ratio"] == pytest.approx(row["ours"]["images_per_s"] / row["torchvision"]["images_per_s"])
    infer = rows[0]
    # Identical weights: both models put the same candidates through their postprocess.
    assert infer["ours"]["candidates_per_image"] == infer["torchvision"]["candidates_per_image"] > 0
    for graph_row in rows[2:]:
        assert graph_row["torchvision"] == infer["torchvision"]  # against torchvision's eager inference
        if "ssd300" in argv:  # SSD's exported graph gives the eager model's detections (see docs/export.md)
            assert graph_row["ours"]["detections_per_image"] == pytest.approx(infer["ours"]["detections_per_image"])
    table = capsys.readouterr().out
    assert table.count("\n| ") == len(rows) and "ours/tv" in table


def test_profile_writes_op_tables(bench_speed, tmp_path, one_thread):
    argv = TINY_SSD + ["--mode", "infer", "--repeats", "1", "--warmup", "0", "--profile", str(tmp_path)]
    assert bench_speed.main(argv) == 0
    tables = sorted(p.name for p in tmp_path.glob("*.txt"))
    assert tables == ["ssd300_infer_ours.txt", "ssd300_infer_torchvision.txt"]
    assert "Self CPU" in (tmp_path / "ssd300_infer_ours.txt").read_text()


def detections_of_both(ours, peer, batch):
    """Per-image detections of our model and of torchvision's peer on the same batch, in eval mode."""
    ours.eval()
    peer.eval()
    with torch.no_grad():
        outputs = ours(batch["images"], batch["image_sizes"])
        mine = split_detections(ours.postprocess(outputs, batch["image_sizes"], batch["scales"]))
        return mine, peer(batch["image_list"])


@pytest.mark.parametrize(("model", "tiny", "levels"), [("faster_rcnn_vgg16", TINY_FASTER_RCNN, 1),
                                                  ("faster_rcnn_fpn", TINY_FPN, 5)])
def test_faster_rcnn_peer_gives_our_detections_with_shared_weights(bench_speed, one_thread, model, tiny, levels):
    args = bench_speed.parse_args(tiny + ["--score-threshold", "0.0"])
    _, ours, peer, shared = bench_speed.build_pair(model, args)
    assert shared and len(peer.rpn.anchor_generator.sizes) == levels
    batch = make_batches(1, 2, 96, 128, 20, vary_sizes=True, seed=1)[0]
    mine, theirs = detections_of_both(ours, peer, batch)
    for a, b in zip(mine, theirs):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=1e-4)


def test_mobilenet_fpn_peer_gives_our_detections_with_shared_weights(bench_speed, one_thread):
    """Anchor sizes per level and the proposal score threshold reach torchvision's model too."""
    args = bench_speed.parse_args(TINY_MOBILENET + ["--score-threshold", "0.0"])
    config, ours, peer, _ = bench_speed.build_pair("faster_rcnn_mobilenet320", args)
    assert [len(sizes) for sizes in peer.rpn.anchor_generator.sizes] == [5, 5, 5]
    assert peer.rpn.score_thresh == 0.05
    batch = make_batches(1, 2, 96, 128, 20, vary_sizes=True, seed=1)[0]
    # From scratch every class scores about 1 / 21 and near-ties decide the order. BatchNorm statistics
    # from the batch and a wider classifier spread the scores, so that the comparison means something.
    for norm in (m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        ours.train().backbone(batch["images"])
        torch.nn.init.normal_(ours.roi_heads.cls_score.weight, std=0.2)
    assert copy_weights(config, ours, peer)
    mine, theirs = detections_of_both(ours, peer, batch)
    for a, b in zip(mine, theirs):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        a, b = _ties_in_box_order(a), _ties_in_box_order(b)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=1e-4)
        assert torch.equal(a["labels"], b["labels"])


def _ties_in_box_order(detections: dict) -> dict:
    """Detections by descending score, equal scores by their box: on a 3 x 4 map, small RoIs in a corner
    pool the same cell and score exactly alike, and the two postprocesses may list such ties either way."""
    order = torch.arange(len(detections["scores"]))
    for key in [detections["boxes"][:, i] for i in reversed(range(4))] + [-detections["scores"]]:
        order = order[key[order].argsort(stable=True)]
    return {name: value[order] for name, value in detections.items()}


def test_ssdlite_peer_is_torchvisions_with_our_weights(bench_speed, one_thread):
    args = bench_speed.parse_args(TINY + ["--model", "ssdlite320", "--image-size", "160", "--score-threshold", "0.05"])
    config, ours, peer, shared = bench_speed.build_pair("ssdlite320", args)
    assert shared and type(peer.head).__name__ == "SSDLiteHead"
    batch = make_batches(1, 2, 160, 160, 20, size_divisible=1, seed=1)[0]
    # BatchNorm statistics from the batch itself: from SSDlite's N(0, 0.03) start every location
    # scores alike, and tied scores may be ranked differently by the two postprocesses.
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        ours.train().head(ours.trunk(batch["images"]))
    assert copy_weights(config, ours, peer)
    mine, theirs = detections_of_both(ours, peer, batch)
    for a, b in zip(mine, theirs):
        assert len(a["boxes"]) == len(b["boxes"]) > 20
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=0)
        # The best 20: further down, scores of untrained weights come within rounding of each other.
        assert torch.equal(a["labels"][:20], b["labels"][:20])
        torch.testing.assert_close(a["boxes"][:20], b["boxes"][:20], atol=1e-3, rtol=0)


def test_model_files_of_any_backend_are_timed(bench_speed, tmp_path, capsys, one_thread):
    """--model-file: a checkpoint (torch) and its exported ONNX file (onnxruntime), each a row named by
    backend and precision, with no torchvision peer."""
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    from detect.config import config_to_dict, load_config
    from detect.export import export_onnx
    from detect.models.build import build_model

    config = load_config("synthetic_ssd", ["input.size=64", "model.ssd.aspect_ratios=[[2],[2],[2]]"])
    torch.manual_seed(0)
    model = build_model(config.model, config.input, 3).eval()
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "class_names": ["a", "b", "c"]},
               checkpoint)
    exported = tmp_path / "tiny.onnx"
    export_onnx(checkpoint, exported, dynamic_batch=True)
    out = tmp_path / "files.json"
    assert bench_speed.main(["--model-file", str(checkpoint), "--model-file", str(exported), "--device", "cpu",
                             "--dtype", "fp32", "--batch-size", "2", "--warmup", "1", "--repeats", "2",
                             "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["mode"] for row in rows] == ["torch fp32", "onnxruntime fp32"]
    for row in rows:
        assert row["ours"]["images_per_s"] > 0 and row["torchvision"] is None and row["image_size"] == [64, 64]
    assert rows[0]["ours"]["detections_per_image"] == pytest.approx(rows[1]["ours"]["detections_per_image"])
    assert capsys.readouterr().out.count("\n| ") == 2


def test_a_model_file_that_cannot_be_read_is_a_one_line_error(bench_speed, tmp_path, capsys):
    for path, message in [(tmp_path / "none.onnx", "none.onnx: ONNX file not found"),
                          (tmp_path / "model.tflite", "model.tflite: no backend reads '.tflite' files")]:
        assert bench_speed.main(["--model-file", str(path), "--device", "cpu", "--dtype", "fp32"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
