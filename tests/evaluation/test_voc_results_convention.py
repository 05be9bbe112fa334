"""`detect eval --detections` on VOC data scores boxes given in the XML's own 1-based corners as the
VOC devkit does: checked against a small, plain reference of the devkit's all-point AP (+1 pixel
widths) on a case where the one-pixel shift decides true and false positives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.cli import main
from detect.config import load_config
from detect.data.build import build_dataset
from detect.evaluation.detections_file import LabelResolver, dataset_ground_truths, predictions_from_results
from detect.evaluation.evaluator import DetectionEvaluator
from tests.data.conftest import write_voc

# XML corners (xmin, ymin, xmax, ymax), 1-based and inclusive, as in the annotation files.
GROUND_TRUTH = {
    "a": [("cat", 1, 1, 10, 10), ("dog", 20, 5, 40, 30)],
    "b": [("cat", 5, 5, 24, 24), ("cat", 30, 10, 49, 29, 1)],  # the second is difficult
    "c": [("dog", 11, 11, 30, 40)],
}
# (image, class, xmin, ymin, xmax, ymax, score) in the same convention. Several overlap their ground
# truth at an IoU above 0.5 in the devkit's +1 widths and below it without them (e.g. a: 0.60 vs 0.45).
DETECTIONS = [
    ("a", "cat", 1, 1, 10, 6, 0.9),
    ("a", "dog", 20, 5, 40, 18, 0.8),
    ("b", "cat", 5, 5, 24, 15, 0.7),
    ("b", "cat", 30, 10, 49, 29, 0.95),  # on the difficult object: ignored
    ("c", "dog", 11, 11, 30, 27, 0.6),
    ("c", "cat", 2, 2, 12, 12, 0.85),  # a false positive
    ("a", "cat", 1, 1, 10, 10, 0.3),  # a duplicate of a matched object
]


def devkit_iou(box, gt) -> float:
    """IoU of two boxes in 1-based inclusive corners, widths with +1 (VOCdevkit voc_eval)."""
    iw = min(box[2], gt[2]) - max(box[0], gt[0]) + 1
    ih = min(box[3], gt[3]) - max(box[1], gt[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
    return inter / (area(box) + area(gt) - inter)


def devkit_all_point_ap(class_name: str, iou_thresh: float = 0.5) -> float:
    """The devkit's procedure for one class: detections by descending score, each matched to the
    unmatched ground truth of best IoU; difficult objects neither count nor penalise; AP is the area
    under the precision envelope at every recall change (VOC2010+)."""
    gts = {image: [(obj[1:5], bool(obj[5]) if len(obj) > 5 else False, [False])
                   for obj in objects if obj[0] == class_name]
           for image, objects in GROUND_TRUTH.items()}
    npos = sum(not difficult for objects in gts.values() for _, difficult, _ in objects)
    dets = sorted((d for d in DETECTIONS if d[1] == class_name), key=lambda d: -d[6])
    tp, fp = [], []
    for image, _, *box, _score in dets:
        best, best_gt = 0.0, None
        for gt in gts[image]:
            iou = devkit_iou(box, gt[0])
            if iou > best:
                best, best_gt = iou, gt
        if best_gt is not None and best > iou_thresh:  # the devkit's test; no IoU here is exactly 0.5
            if best_gt[1]:
                continue  # difficult
            if not best_gt[2][0]:
                best_gt[2][0] = True
                tp.append(1), fp.append(0)
                continue
        tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


@pytest.fixture
def voc_case(tmp_path):
    root = write_voc(tmp_path / "voc", GROUND_TRUTH, {"val": list(GROUND_TRUTH)})
    config = tmp_path / "voc.yaml"
    config.write_text(f"data:\n  format: voc\n  root: {root}\n  train_split: val\n  val_split: val\n"
                      f"  classes: [cat, dog]\n")
    results = [{"image_id": image, "category_id": name, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
               for image, name, x1, y1, x2, y2, score in DETECTIONS]
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(results))
    return config, detections, results


def test_results_in_xml_corners_score_as_the_devkit(voc_case, tmp_path, capsys):
    config, detections, results = voc_case
    reference = {name: devkit_all_point_ap(name) for name in ("cat", "dog")}
    out_json = tmp_path / "metrics.json"
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--detections", str(detections), "--config", str(config), "--metric", "voc12",
              "--json", str(out_json)])
    assert exited.value.code in (0, None), capsys.readouterr().err
    scored = json.loads(out_json.read_text())["voc12"]
    assert scored["ap"]["cat"] == pytest.approx(reference["cat"], abs=1e-9)
    assert scored["ap"]["dog"] == pytest.approx(reference["dog"], abs=1e-9)
    assert scored["map"] == pytest.approx(np.mean(list(reference.values())), abs=1e-9)

    # The case is one where the convention decides: read as plain pixel corners, the same boxes
    # score otherwise.
    dataset = build_dataset(load_config(str(config), []).data, "val")
    truths = dataset_ground_truths(dataset)
    image_ids = [t["image_id"] for t in truths]
    unshifted = predictions_from_results(results, image_ids, LabelResolver(dataset, detections), detections)
    evaluator = DetectionEvaluator(dataset.class_names, metrics="voc12")
    evaluator.process(unshifted, truths)
    assert abs(evaluator.evaluate()["voc12"]["map"] - scored["map"]) > 0.1


def test_unknown_class_is_an_error_or_skipped_and_counted(voc_case, tmp_path, capsys):
    config, detections, results = voc_case
    extra = results + [{"image_id": "a", "category_id": "zebra", "bbox": [1, 1, 5, 5], "score": 0.99},
                       {"image_id": "b", "category_id": 7, "bbox": [1, 1, 5, 5], "score": 0.99}]
    detections.write_text(json.dumps(extra))
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--detections", str(detections), "--config", str(config)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "class 'zebra' is not in data.classes" in err and "--unknown-class skip" in err
    out_json = tmp_path / "skip.json"
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--detections", str(detections), "--config", str(config), "--metric", "voc12",
              "--unknown-class", "skip", "--json", str(out_json)])
    assert exited.value.code in (0, None)
    assert "skipped 2 detections of classes not in data.classes" in capsys.readouterr().out
    record = json.loads(out_json.read_text())
    assert record["skipped_unknown_class"] == 2
    assert record["voc12"]["ap"]["cat"] == pytest.approx(devkit_all_point_ap("cat"), abs=1e-9)
