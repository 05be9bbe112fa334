"""tools/compare_raccoon.py: ours and torchvision's SSD train and evaluate through the real engine
(tiny in-memory data; the raccoon run itself is for the GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from detect.config import Config
from detect.detections.padded import split_detections
from tests.conftest import load_tool
from tests.engine import doubles

pytestmark = pytest.mark.usefixtures("one_thread")




def _loaders(config, distributed):
    train, val = doubles.TinyDataset(12, size=96, seed=0), doubles.TinyDataset(12, size=96, seed=1)
    return (DataLoader(train, batch_size=config.train.batch_size, collate_fn=doubles.collate),
            DataLoader(val, batch_size=config.eval.batch_size, collate_fn=doubles.collate))


@pytest.mark.parametrize("same_init", [False, True])
def test_ssd_pair_trains_and_evaluates_through_the_engine(tmp_path, same_init):
    tool = load_tool("compare_raccoon")
    torch.manual_seed(0)
    config = Config.model_validate({
        "name": "compare_ssd",
        "input": {"resize": "fixed", "size": 96, "size_divisible": 1},
        "model": {"arch": "ssd", "backbone": "resnet18",
                  "ssd": {"aspect_ratios": [[2.0], [2.0], [2.0], [2.0]], "top_k_per_class": 20}},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr": 1e-4, "warmup_iters": 0, "amp": False,
                  "log_every": 1},
        "eval": {"batch_size": 4},
    })
    loaders = tool.first_images(_loaders, max_images=8)
    assert [len(loader.dataset) for loader in loaders(config, False)] == [8, 8]
    summary = tool.train_both(config, tmp_path, device="cpu", build_loaders_fn=loaders, same_init=same_init)
    for name in ("ours", "torchvision"):
        assert (Path(summary[name]["run_dir"]) / "metrics.jsonl").is_file()
        assert summary[name]["last_map"] is not None and 0.0 <= summary[name]["last_map"] <= 1.0
        assert summary[name]["wall_s"] > 0 and summary[name]["train_images_per_s"] > 0


def test_a_model_that_stops_is_recorded_and_the_other_still_trains(tmp_path, monkeypatch):
    import detect.engine.run as engine
    from detect.errors import DetectError

    tool = load_tool("compare_raccoon")
    calls = []

    def fake_training(config, output_dir, **kwargs):
        calls.append(output_dir.name)
        if output_dir.name == "ours":
            raise DetectError("non-finite loss at step 3 (images 1, 2)")
        output_dir.mkdir(parents=True)
        (output_dir / "metrics.jsonl").write_text(
            '{"type": "train", "images_per_s": 5.0}\n{"type": "eval", "map": 0.25}\n')
        return output_dir

    monkeypatch.setattr(engine, "run_training", fake_training)
    summary = tool.train_both(Config(), tmp_path, device="cpu", build_loaders_fn=lambda *a: None)
    assert calls == ["ours", "torchvision"]
    assert summary["ours"]["error"] == "non-finite loss at step 3 (images 1, 2)" and summary["ours"]["best_map"] is None
    assert summary["torchvision"]["best_map"] == 0.25 and summary["torchvision"]["train_images_per_s"] == 5.0


def test_a_config_of_the_other_arch_is_refused(capsys):
    tool = load_tool("compare_raccoon")
    with pytest.raises(SystemExit):
        tool.main(["--arch", "ssd", "--ssd-config", "voc_faster_rcnn", "--data", "nowhere"])
    assert "--ssd-config voc_faster_rcnn is a faster_rcnn config" in capsys.readouterr().err


def test_ssd_peer_keeps_the_model_contract():
    tool = load_tool("compare_raccoon")
    config = Config.model_validate({
        "input": {"resize": "fixed", "size": 96, "size_divisible": 1},
        "model": {"arch": "ssd", "backbone": "resnet18", "ssd": {"aspect_ratios": [[2.0], [2.0], [2.0], [2.0]]}},
    })
    peer = tool.build_peer(config, num_classes=2)
    images = torch.rand(2, 3, 96, 96)
    sizes = torch.tensor([[96, 96], [96, 80]])
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 20.0, 40.0, 90.0]]), "labels": torch.tensor([2])}]
    losses = peer(images, sizes, targets)
    assert set(losses) == {"loss_box", "loss_cls"} and all(torch.isfinite(v) for v in losses.values())
    peer.eval()
    detections = split_detections(peer.postprocess(peer(images, sizes), sizes, torch.tensor([[0.5, 0.5], [1.0, 2.0]])))
    assert len(detections) == 2
    for found, (h, w), (sx, sy) in zip(detections, [(96, 96), (96, 80)], [(0.5, 0.5), (1.0, 2.0)]):
        assert set(found) == {"boxes", "scores", "labels"}
        if len(found["boxes"]):
            assert (found["boxes"][:, 2] <= w / sx + 1e-3).all() and (found["boxes"][:, 3] <= h / sy + 1e-3).all()


def test_faster_rcnn_pair_trains_and_evaluates_through_the_engine(tmp_path):
    tool = load_tool("compare_raccoon")
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


def test_same_init_gives_both_models_the_same_starting_detections():
    tool = load_tool("compare_raccoon")
    config = Config.model_validate({
        "input": {"resize": "fixed", "size": 96, "size_divisible": 1},
        # Default boxes clamped as torchvision's SSD clamps them, so that the two models are the same.
        "model": {"arch": "ssd", "backbone": "resnet18", "pretrained": "none",
                  "ssd": {"aspect_ratios": [[2.0], [2.0], [2.0], [2.0]], "clip_default_boxes": "size"}},
    })
    build_ours, build_torchvision = tool.same_init_builders(config)
    torch.manual_seed(123)  # each builder seeds itself: what ran before must not matter
    ours = build_ours(config, 2).eval()
    peer = build_torchvision(config, 2).eval()
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[96, 96], [96, 96]])
    scales = torch.ones(2, 2)
    with torch.no_grad():
        ours_found = split_detections(ours.postprocess(ours(images, sizes), sizes, scales))
        peer_found = split_detections(peer.postprocess(peer(images, sizes), sizes, scales))
    for mine, theirs in zip(ours_found, peer_found):
        # The strongest detections; further down, near-equal random-weight scores meet the 200 cap.
        top = 50
        assert len(mine["scores"]) >= top
        torch.testing.assert_close(mine["scores"][:top], theirs["scores"][:top], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(by_score_then_box(mine, top), by_score_then_box(theirs, top), rtol=1e-4, atol=1e-3)


def by_score_then_box(found: dict, top: int) -> torch.Tensor:
    """[top, 5] rows (score rounded, box), ordered so that equal scores list their boxes in one order."""
    rows = torch.cat([found["scores"][:top, None].mul(1e4).round(), found["boxes"][:top]], dim=1)
    for column in reversed(range(rows.shape[1])):
        rows = rows[rows[:, column].argsort(stable=True)]
    return rows


def test_same_init_ssdlite_trains_with_torchvisions_losses_and_gradients():
    """One training step of ours and torchvision's SSDlite from the same weights on the same batch:
    equal losses and equal gradients for every parameter. In float64, so that near-equal negatives of
    the hard-negative mining are ranked alike in both; in float32 their order, and so the gradients,
    can differ by rounding alone."""
    from detect.config import load_config
    from detect.models.weights import MAPPINGS

    tool = load_tool("compare_raccoon")
    config = load_config("voc_ssdlite320", ["model.pretrained=none", "data.classes=[a,b]"])
    build_ours, build_torchvision = tool.same_init_builders(config)
    ours = build_ours(config, 2).train().double()
    peer = build_torchvision(config, 2).train().double()
    data = doubles.TinyDataset(2, size=320, seed=3, scale=1.0)
    images, targets = doubles.collate([data[0], data[1]])
    images = images.double()
    sizes = torch.stack([t["image_size"] for t in targets])
    # Boxes of a few default boxes' size, at fractional corners: a box that lies wholly inside several
    # default boxes of one size ties in IoU with all of them, and the two models may then take
    # different ones as its first match (both right).
    gt_boxes = [[[40.37, 61.21, 131.53, 170.11]], [[150.2, 20.7, 290.4, 240.9], [12.5, 200.3, 80.1, 301.7]]]
    targets = [{**t, "boxes": torch.tensor(boxes, dtype=torch.float64), "labels": torch.tensor([1, 2][: len(boxes)])}
               for t, boxes in zip(targets, gt_boxes)]
    to_torchvision = MAPPINGS[("ssdlite", "mobilenet_v3_large")].to_torchvision
    for term in ("loss_cls", "loss_box"):
        ours.zero_grad()
        peer.zero_grad()
        ours_loss, peer_loss = ours(images, sizes, targets)[term], peer(images, sizes, targets)[term]
        torch.testing.assert_close(ours_loss.double(), peer_loss.double(), rtol=1e-6, atol=1e-7)
        ours_loss.backward()
        peer_loss.backward()
        ours_grads = to_torchvision({n: p.grad for n, p in ours.named_parameters() if p.grad is not None})
        peer_grads = {n.removeprefix("model."): p.grad for n, p in peer.named_parameters() if p.grad is not None}
        assert set(peer_grads) <= set(ours_grads)
        for name, grad in peer_grads.items():
            scale = grad.norm().item()
            if scale > 1e-8:
                difference = (ours_grads[name].double() - grad).norm().item()
                assert difference <= 1e-4 * scale, (term, name, difference, scale)
