"""COCO box metrics through pycocotools, and COCO results JSON files.

- `coco_ground_truth(ground_truths, class_names)`: an in-memory pycocotools `COCO` built from per-image
  ground-truth dicts (VOC data, or COCO data without its annotation file). Image ids become 1..N in
  the given order; category ids are the labels 1..C. `area` is the box area (COCO's own files use the
  mask area; pass the dataset's `COCO` object to `coco_evaluate` for official numbers).
  Choice for VOC `difficult` objects: they are written as `iscrowd: 1`, which pycocotools ignores:
  a detection on a difficult object is neither true nor false positive, as in the VOC devkit (crowd
  regions match by intersection over the detection's area, a little more lenient than IoU; several
  detections may fall on one). Dropping them instead would turn detections of them into false positives.
- `coco_evaluate(coco_gt, results)`: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
  as a dict (`print_summary=True` prints pycocotools' summary table). A value pycocotools reports as
  -1 (no ground truth in that area range) is None. `coco_evaluation` gives the whole evaluation
  (precision and recall arrays, per-class AP). Both compute with `backend`: `numpy` (coco_eval.py,
  the default: pycocotools' numbers, 18x faster on a COCO-val-sized set) or `pycocotools` itself.
- `predictions_to_coco_results`, `write_coco_results`, `read_coco_results`: the results JSON
  (`image_id`, `category_id`, `bbox` as xywh, `score`), one entry per detection.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.data.box_formats import xyxy_to_xywh
from detect.errors import DataError, DetectError
from detect.evaluation.coco_eval import CocoBoxEvaluation, evaluate_coco_boxes, mean_valid
from detect.text_files import read_json

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# eval.coco_backend: ours (vectorised numpy, the default) or pycocotools (the reference it equals).
COCO_BACKENDS = ("numpy", "pycocotools")
DEFAULT_COCO_BACKEND = "numpy"
PROGRESS_FROM = 200_000  # detections from which the numpy backend shows a progress bar


def coco_ground_truth(ground_truths: Sequence[dict], class_names: Sequence[str]) -> COCO:
    """Per-image ground truth {boxes, labels, difficult, iscrowd, orig_size} -> in-memory COCO.

    Image i of the list gets id i + 1; difficult and crowd objects get iscrowd 1 (ignored).
    """
    images, annotations = [], []
    for index, target in enumerate(ground_truths):
        height, width = (int(v) for v in np.asarray(target["orig_size"]).reshape(2))
        images.append({"id": index + 1, "height": height, "width": width})
        boxes = xyxy_to_xywh(target["boxes"])
        ignore = np.asarray(target.get("difficult", np.zeros(len(boxes), bool)), bool) | np.asarray(
            target.get("iscrowd", np.zeros(len(boxes), bool)), bool
        )
        for box, label, crowd in zip(boxes.tolist(), np.asarray(target["labels"]).tolist(), ignore.tolist()):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index + 1, "category_id": int(label), "bbox": box,
                 "area": box[2] * box[3], "iscrowd": int(crowd)}
            )
    categories = [{"id": label, "name": name} for label, name in enumerate(class_names, start=1)]
    return index_coco({"images": images, "annotations": annotations, "categories": categories})


def index_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """pycocotools' loadRes, also for an empty list (which loadRes cannot take)."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes([dict(r) for r in results])  # loadRes writes into the dicts
    return index_coco({"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                       "annotations": []})


def coco_evaluate(
    coco_gt: COCO,
    results: list[dict],
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
    print_summary: bool = False,
    backend: str = DEFAULT_COCO_BACKEND,
) -> dict[str, float | None]:
    """COCO box metrics of `results` (COCO results entries) against `coco_gt`.

    image_ids / category_ids restrict the evaluation (default: all of coco_gt's). -> dict with the
    keys of COCO_METRIC_NAMES, floats in 0..1, None where pycocotools reports -1.
    """
    evaluation = coco_evaluation(coco_gt, results, image_ids, category_ids, backend)
    if print_summary:
        print(summary_table(evaluation.stats))
    return stats_dict(evaluation.stats)


def stats_dict(stats) -> dict[str, float | None]:
    """The 12 numbers by name; None where pycocotools reports -1."""
    return {name: (float(value) if value >= 0 else None) for name, value in zip(COCO_METRIC_NAMES, stats)}


def coco_evaluation(coco_gt: COCO, results: list[dict], image_ids: Sequence[int] | None = None,
                    category_ids: Sequence[int] | None = None, backend: str = DEFAULT_COCO_BACKEND
                    ) -> CocoBoxEvaluation:
    """The whole evaluation (stats, precision, recall, per-class AP) by `backend`: `numpy`
    (detect/evaluation/coco_eval.py, the default) or `pycocotools` (the reference; the same numbers)."""
    if backend not in COCO_BACKENDS:
        raise DetectError(f"eval.coco_backend {backend}: choose from {', '.join(COCO_BACKENDS)}")
    if backend == "numpy":
        return evaluate_coco_boxes(coco_gt.dataset, results, image_ids, category_ids,
                                   progress=len(results) >= PROGRESS_FROM)
    coco_dt = load_results(coco_gt, results)
    evaluation = COCOeval(coco_gt, coco_dt, iouType="bbox")
    if image_ids is not None:
        evaluation.params.imgIds = sorted(int(i) for i in image_ids)
    if category_ids is not None:
        evaluation.params.catIds = sorted(int(c) for c in category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision, recall = evaluation.eval["precision"], evaluation.eval["recall"]
    per_class = [mean_valid(precision[:, :, k, 0, -1]) for k in range(precision.shape[2])]
    return CocoBoxEvaluation(precision, recall, np.asarray(evaluation.stats), np.array(per_class),
                             list(evaluation.params.imgIds), list(evaluation.params.catIds))


def summary_table(stats) -> str:
    """pycocotools' printed summary, line for line."""
    lines = []
    for name, value in zip(COCO_METRIC_NAMES, stats):
        title, kind = ("Average Precision", "(AP)") if name.startswith("AP") else ("Average Recall", "(AR)")
        iou = {"AP50": "0.50", "AP75": "0.75"}.get(name, "0.50:0.95")
        area = {"s": "small", "m": "medium", "l": "large"}.get(name[-1], "all")
        max_dets = int(name[2:]) if name in ("AR1", "AR10", "AR100") else 100
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}")
    return "\n".join(lines)


def predictions_to_coco_results(
    predictions: Sequence[dict],
    image_ids: Sequence[Hashable],
    label_to_category_id: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[dict]:
    """Per-image predictions {boxes xyxy [N, 4], scores [N], labels [N]} -> COCO results entries.

    image_ids: the id written for each image. label_to_category_id maps an int array of labels to
    category ids (e.g. a COCO dataset's `category_map.labels_to_category_ids`); default: the label.
    """
    results = []
    for prediction, image_id in zip(predictions, image_ids):
        labels = np.asarray(prediction["labels"], dtype=np.int64).reshape(-1)
        category_ids = label_to_category_id(labels) if label_to_category_id is not None else labels
        boxes = xyxy_to_xywh(prediction["boxes"]).tolist()
        scores = np.asarray(prediction["scores"], dtype=np.float64).reshape(-1).tolist()
        image_id = image_id.item() if isinstance(image_id, np.generic) else image_id
        for box, score, category_id in zip(boxes, scores, np.asarray(category_ids).tolist()):
            results.append({"image_id": image_id, "category_id": category_id, "bbox": box, "score": score})
    return results


def write_coco_results(path: str | Path, results: list[dict]) -> None:
    """Writes COCO results entries as a JSON list."""
    Path(path).write_text(json.dumps(results))


def read_coco_results(path: str | Path) -> list[dict]:
    """Reads and checks a COCO results JSON: a list of {image_id, category_id, bbox [4 numbers], score}."""
    path = Path(path)
    data = read_json(path, "detections file")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of detections (COCO results format)")
    for index, entry in enumerate(data):
        check_result_entry(entry, index, path)
    return data


def check_result_entry(entry, index: int, path: Path) -> None:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: entry {index} is not an object")
    missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in entry]
    if missing:
        raise DataError(f"{path}: entry {index} lacks {', '.join(missing)}")
    for key in ("image_id", "category_id"):
        if not isinstance(entry[key], (int, str)) or isinstance(entry[key], bool):
            raise DataError(f"{path}: entry {index}: {key} must be an integer or a string, got {entry[key]!r:.60}")
    bbox = entry["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise DataError(f"{path}: entry {index}: bbox must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
    if bbox[2] < 0 or bbox[3] < 0:
        # VOC scoring would clip such a box to nothing and COCO's would count it with a negative area.
        raise DataError(f"{path}: entry {index}: bbox {bbox!r:.80} has a negative width or height; [x, y, w, h] "
                        f"with w, h >= 0 expected")
    if not _is_number(entry["score"]):
        raise DataError(f"{path}: entry {index}: score must be a number, got {entry['score']!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
