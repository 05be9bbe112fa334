"""COCO metrics: parity with pycocotools run directly, results JSON round trip, bad files."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.data.box_formats import xywh_to_xyxy, xyxy_to_xywh
from detect.errors import DataError
from detect.evaluation.coco import (
    COCO_METRIC_NAMES,
    predictions_to_coco_results,
    read_coco_results,
    write_coco_results,
)
from detect.evaluation.evaluator import DetectionEvaluator

NAMES = ["a", "b", "c"]


def test_xywh_round_trip():
    coco = np.array([[1, 2, 10, 20], [0.5, 0.25, 3, 4]])
    boxes = xywh_to_xyxy(coco)
    np.testing.assert_allclose(boxes, [[1, 2, 11, 22], [0.5, 0.25, 3.5, 4.25]])
    np.testing.assert_allclose(xyxy_to_xywh(boxes), coco)


def random_images(seed, num_images=12, num_classes=3):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for image in range(num_images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(4, 150, (n, 2))], 1).astype(np.float32)
        labels = rng.integers(1, num_classes + 1, n)
        gts.append({"boxes": boxes, "labels": labels, "difficult": np.zeros(n, bool), "iscrowd": rng.random(n) < 0.15,
                    "image_id": 100 + image, "orig_size": (360, 360)})
        m = int(rng.integers(0, 10))
        near = rng.integers(0, max(n, 1), m)
        dboxes = (boxes[near] if n else rng.uniform(0, 200, (m, 4))) + rng.normal(0, 6, (m, 4))
        dboxes[:, 2:] = np.maximum(dboxes[:, 2:], dboxes[:, :2] + 1)
        dlabels = np.where(rng.random(m) < 0.7, labels[near] if n else 1, rng.integers(1, num_classes + 1, m))
        preds.append(
            {"boxes": dboxes.astype(np.float32), "scores": rng.random(m).astype(np.float32), "labels": dlabels})
    return preds, gts


def direct_pycocotools(preds, gts, category_ids):
    """pycocotools on its own, with the ground truth and results written out here by hand."""
    images, annotations, results = [], [], []
    for p, g in zip(preds, gts):
        images.append({"id": g["image_id"], "height": 360, "width": 360})
        for box, label, crowd in zip(g["boxes"].tolist(), g["labels"].tolist(), g["iscrowd"].tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": g["image_id"],
                                "category_id": category_ids[label - 1], "bbox": [box[0], box[1], w, h], "area": w * h,
                                "iscrowd": int(crowd)})
        for box, score, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            results.append({"image_id": g["image_id"], "category_id": category_ids[label - 1],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": annotations,
                       "categories": [{"id": c, "name": n} for c, n in zip(category_ids, NAMES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return coco_gt, evaluation.stats


def assert_same_stats(ours: dict, stats) -> None:
    assert list(ours) == list(COCO_METRIC_NAMES)
    for name, expected in zip(COCO_METRIC_NAMES, stats):
        if expected < 0:
            assert ours[name] is None
        else:
            assert ours[name] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_in_memory_ground_truth_matches_pycocotools(seed):
    preds, gts = random_images(seed)
    _, stats = direct_pycocotools(preds, gts, [1, 2, 3])
    evaluator = DetectionEvaluator(NAMES, metrics="coco")
    evaluator.process(preds, gts)
    assert_same_stats(evaluator.evaluate()["coco"], stats)
    assert stats[1] > 0  # the case is not trivial


def test_existing_coco_ground_truth_with_category_mapping():
    preds, gts = random_images(3)
    category_ids = [7, 11, 42]
    coco_gt, stats = direct_pycocotools(preds, gts, category_ids)
    mapping = np.array([0, *category_ids])
    evaluator = DetectionEvaluator(NAMES, metrics="coco", coco_gt=coco_gt,
                                   label_to_category_id=lambda label: mapping[label])
    evaluator.process(preds, gts)
    assert_same_stats(evaluator.evaluate()["coco"], stats)


def test_no_detections_give_zero_ap():
    _, gts = random_images(0)
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in gts]
    evaluator = DetectionEvaluator(NAMES, metrics="coco")
    evaluator.process(empty, gts)
    coco = evaluator.evaluate()["coco"]
    assert coco["AP"] == 0.0 and coco["AR100"] == 0.0


def test_print_summary_is_optional(capsys):
    preds, gts = random_images(0)
    evaluator = DetectionEvaluator(NAMES, metrics="coco")
    evaluator.process(preds, gts)
    evaluator.evaluate()
    assert capsys.readouterr().out == ""
    evaluator.print_coco_summary = True
    evaluator.evaluate()
    assert "Average Precision" in capsys.readouterr().out


def test_results_json_round_trip(tmp_path):
    preds, gts = random_images(1)
    image_ids = [g["image_id"] for g in gts]
    results = predictions_to_coco_results(preds, image_ids, lambda labels: labels * 10)
    path = tmp_path / "results.json"
    write_coco_results(path, results)
    back = read_coco_results(path)
    assert len(back) == sum(len(p["scores"]) for p in preds)
    offset = 0
    for p, image_id in zip(preds, image_ids):
        entries = back[offset : offset + len(p["scores"])]
        offset += len(entries)
        assert all(e["image_id"] == image_id for e in entries)
        assert [e["category_id"] for e in entries] == (p["labels"] * 10).tolist()
        np.testing.assert_allclose(
            xywh_to_xyxy([e["bbox"] for e in entries]).reshape(-1, 4), p["boxes"].reshape(-1, 4), atol=1e-4)
        np.testing.assert_allclose([e["score"] for e in entries], p["scores"], atol=1e-7)


@pytest.mark.parametrize(
    "text, message",
    [("[{", "malformed JSON"), ('{"a": 1}', "expected a JSON list"), ('[{"image_id": 1}]', "lacks category_id"),
     ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2], "score": 0.5}]', "bbox must be 4 numbers")],
)
def test_bad_results_file_names_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_coco_results(path)
    assert str(path) in str(error.value)
    with pytest.raises(DataError, match="not found"):
        read_coco_results(tmp_path / "missing.json")


def test_difficult_objects_are_ignored_in_coco_conversion():
    boxes = np.array([[0, 0, 50, 50], [100, 100, 150, 160]], np.float32)
    target = {"boxes": boxes, "labels": np.array([1, 1]), "difficult": np.array([False, True]),
              "iscrowd": np.zeros(2, bool), "image_id": "img", "orig_size": (200, 200)}
    # The higher-scored detection lies on the difficult object: ignored, not a false positive.
    prediction = {"boxes": boxes[::-1].copy(), "scores": np.array([0.95, 0.9]), "labels": np.array([1, 1])}
    evaluator = DetectionEvaluator(NAMES, metrics=("coco", "voc12"))
    evaluator.process([prediction], [target])
    results = evaluator.evaluate()
    assert results["coco"]["AP50"] == pytest.approx(1.0)
    assert results["voc12"]["map"] == pytest.approx(1.0)
