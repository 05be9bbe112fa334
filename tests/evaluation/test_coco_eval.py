"""The numpy COCO evaluator against pycocotools itself: every precision and recall value, the 12 stats and
each class's AP equal to 1e-12, on random sets and on the cases COCO's rules single out."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import detect.evaluation.coco_eval as coco_eval
from detect.errors import DataError
from detect.evaluation.coco import coco_evaluation, index_coco, summary_table
from detect.evaluation.coco_eval import evaluate_coco_boxes
from tests.conftest import shared_data_dir

COCO128 = shared_data_dir() / "coco128"


def random_set(seed: int, images: int = 24, classes: int = 4, max_gt: int = 8, max_dt: int = 30,
               tied_scores: bool = False, crowd: float = 0.1, first_id: int = 1) -> tuple[dict, list[dict]]:
    """A seeded ground truth (boxes of every COCO size, some at the image border, some crowd regions, an
    annotation `area` that is not always w * h, images without objects) and detections (mostly near the
    objects, some of an unknown class, some anywhere)."""
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    image_entries, annotations, results = [], [], []
    for index in range(images):
        image_id = int(rng.integers(1, 10 ** 6)) * 10 + index if seed % 2 else index + 1  # unordered ids too
        image_entries.append({"id": image_id, "width": width, "height": height})
        count = int(rng.integers(0, max_gt + 1)) if rng.random() > 0.15 else 0
        mine = []
        for _ in range(count):
            side = float(rng.choice([8, 20, 40, 80, 200]))
            w, h = side * rng.uniform(0.5, 2), side * rng.uniform(0.5, 2)
            x = 0.0 if rng.random() < 0.1 else rng.uniform(0, width - w)
            y = 0.0 if rng.random() < 0.1 else rng.uniform(0, height - h)
            entry = {"id": len(annotations) + first_id, "image_id": image_id,
                     "category_id": int(rng.integers(1, classes + 1)), "bbox": [x, y, w, h],
                     "area": w * h * (rng.uniform(0.6, 1.0) if rng.random() < 0.5 else 1.0),
                     "iscrowd": int(rng.random() < crowd)}
            annotations.append(entry)
            mine.append(entry)
        for _ in range(int(rng.integers(0, max_dt + 1))):
            if mine and rng.random() < 0.7:
                near = mine[int(rng.integers(len(mine)))]
                x, y, w, h = (np.array(near["bbox"]) + rng.normal(0, 3, 4)).tolist()
                w, h = max(w, 0.5), max(h, 0.5)
                label = near["category_id"] if rng.random() < 0.8 else int(rng.integers(1, classes + 2))
            else:
                w, h = rng.uniform(2, 200, 2)
                x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
                label = int(rng.integers(1, classes + 2))
            score = float(np.round(rng.random(), 1)) if tied_scores else float(rng.random())
            box = [float(x), float(y), float(w), float(h)]
            results.append({"image_id": image_id, "category_id": label, "bbox": box, "score": score})
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, classes + 1)]
    return {"images": image_entries, "annotations": annotations, "categories": categories}, results


def pycocotools_evaluation(dataset: dict, results: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = dataset
        ground_truth.createIndex()
        if results:
            detections = ground_truth.loadRes([dict(entry) for entry in results])
        else:
            detections = index_coco({**dataset, "annotations": []})
        evaluation = COCOeval(ground_truth, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def assert_same_as_pycocotools(dataset: dict, results: list[dict]) -> None:
    reference = pycocotools_evaluation(dataset, results)
    ours = evaluate_coco_boxes(dataset, results)
    np.testing.assert_allclose(ours.precision, reference.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, reference.eval["recall"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.stats, reference.stats, rtol=0, atol=1e-12)
    precision = reference.eval["precision"]
    for k in range(precision.shape[2]):
        values = precision[:, :, k, 0, -1]
        expected = np.mean(values[values > -1]) if (values > -1).any() else -1
        assert ours.per_class_ap[k] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_random_sets_equal_pycocotools(seed):
    assert_same_as_pycocotools(*random_set(seed))


@pytest.mark.parametrize("case", [
    {"tied_scores": True},  # ties broken in results order, as pycocotools' stable sort does
    {"crowd": 0.5},  # crowd regions: IoU over the detection's area, matched by any number of detections
    {"max_dt": 160, "images": 4, "classes": 2},  # more than 100 detections of a class in an image
    {"first_id": 0},  # an annotation with id 0, which pycocotools' matching reads as unmatched
    {"max_gt": 0},  # no ground truth at all
])
def test_the_cases_coco_rules_single_out(case):
    assert_same_as_pycocotools(*random_set(7, **case))


def test_classes_without_detections_or_ground_truth_and_empty_result_lists():
    dataset, results = random_set(3, classes=5)
    dataset["categories"].append({"id": 9, "name": "never seen"})
    assert_same_as_pycocotools(dataset, [entry for entry in results if entry["category_id"] != 2])
    assert_same_as_pycocotools(dataset, [])


def test_small_chunks_give_the_same_numbers(monkeypatch):
    """Categories are matched in chunks of bounded memory; where the chunks fall changes nothing."""
    dataset, results = random_set(5, max_dt=60)
    whole = evaluate_coco_boxes(dataset, results)
    monkeypatch.setattr(coco_eval, "PAIRS_PER_CHUNK", 20)
    chunked = evaluate_coco_boxes(dataset, results)
    assert np.array_equal(chunked.precision, whole.precision) and np.array_equal(chunked.stats, whole.stats)


def test_restricted_images_and_categories_and_unknown_images():
    dataset, results = random_set(4)
    image_ids = sorted(image["id"] for image in dataset["images"])[::2]
    ground_truth = index_coco(dataset)
    ours = coco_evaluation(ground_truth, results, image_ids, [1, 3], backend="numpy")
    reference = coco_evaluation(ground_truth, results, image_ids, [1, 3], backend="pycocotools")
    np.testing.assert_allclose(ours.precision, reference.precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.stats, reference.stats, rtol=0, atol=1e-12)
    stranger = [{**results[0], "image_id": -5}]
    with pytest.raises(DataError, match="image ids not in the ground truth"):
        evaluate_coco_boxes(dataset, stranger)


def test_the_summary_table_is_pycocotools_printout():
    dataset, results = random_set(2)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        reference = pycocotools_evaluation(dataset, results)
        reference.summarize()
    expected = [line for line in printed.getvalue().splitlines() if line.lstrip().startswith("Average")]
    assert summary_table(evaluate_coco_boxes(dataset, results).stats).splitlines() == expected


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 is not here")
def test_coco128_with_realistic_detections_equals_pycocotools():
    """COCO's own annotations (80 classes, crowd regions, mask areas) with detections drawn around them."""
    from detect.text_files import read_json

    dataset = read_json(COCO128 / "annotations" / "instances_val2017.json", "annotations")
    rng = np.random.default_rng(0)
    results = []
    for entry in dataset["annotations"]:
        for _ in range(int(rng.integers(0, 4))):
            box = (np.array(entry["bbox"]) + rng.normal(0, 0.08, 4) * np.repeat(entry["bbox"][2:], 2)).tolist()
            box[2], box[3] = max(box[2], 1.0), max(box[3], 1.0)
            label = entry["category_id"] if rng.random() < 0.85 else int(rng.choice([c["id"] for c in
                                                                                      dataset["categories"]]))
            results.append({"image_id": entry["image_id"], "category_id": label, "bbox": box,
                            "score": float(rng.random())})
    assert_same_as_pycocotools(dataset, results)


def test_the_progress_bar_changes_nothing(capsys):
    dataset, results = random_set(6)
    quiet = evaluate_coco_boxes(dataset, results)
    shown = evaluate_coco_boxes(dataset, results, progress=True)
    assert np.array_equal(shown.precision, quiet.precision) and "COCO AP" in capsys.readouterr().err
