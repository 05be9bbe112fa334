"""Times VOC mAP (ours) against pycocotools' COCOeval on the same random data.

    PYTHONPATH=. taskset -c 0 python tools/bench_voc_metric.py --images 5000 --classes 20 --dets 100 --gt 3

Detections: `--dets` per image (random classes, boxes near ground truth or anywhere), ground truth
`--gt` objects per image on average. Prints seconds for each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detect.evaluation.coco import coco_evaluate, coco_ground_truth, predictions_to_coco_results
from detect.evaluation.evaluator import DetectionEvaluator


def random_data(num_images: int, num_classes: int, dets_per_image: int, gt_per_image: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    predictions, ground_truths = [], []
    for index in range(num_images):
        num_gt = rng.integers(1, 2 * gt_per_image)
        xy = rng.uniform(0, 400, (num_gt, 2))
        gt_boxes = np.concatenate([xy, xy + rng.uniform(10, 100, (num_gt, 2))], 1).astype(np.float32)
        gt_labels = rng.integers(1, num_classes + 1, num_gt)
        near = rng.integers(0, num_gt, dets_per_image)
        boxes = gt_boxes[near] + rng.normal(0, 8, (dets_per_image, 4)).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.where(
            rng.random(dets_per_image) < 0.5, gt_labels[near], rng.integers(1, num_classes + 1, dets_per_image))
        predictions.append({"boxes": boxes, "scores": rng.random(dets_per_image).astype(np.float32), "labels": labels})
        ground_truths.append({"boxes": gt_boxes, "labels": gt_labels, "difficult": rng.random(num_gt) < 0.1,
                              "iscrowd": np.zeros(num_gt, bool), "image_id": index, "orig_size": (500, 500)})
    return predictions, ground_truths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--gt", type=int, default=3)
    parser.add_argument("--skip-coco", action="store_true")
    args = parser.parse_args()
    predictions, ground_truths = random_data(args.images, args.classes, args.dets, args.gt)
    names = [f"c{i}" for i in range(1, args.classes + 1)]

    evaluator = DetectionEvaluator(names, metrics=("voc07", "voc12"))
    start = time.perf_counter()
    evaluator.process(predictions, ground_truths)
    processed = time.perf_counter()
    results = evaluator.evaluate()
    ours = time.perf_counter() - start
    print(f"ours VOC07+VOC12 mAP: {ours:.3f} s (process {processed - start:.3f} s + evaluate "
          f"{ours - (processed - start):.3f} s)  voc07 {results['voc07']['map']:.4f} "
          f"voc12 {results['voc12']['map']:.4f}  ({sum(len(p['scores']) for p in predictions)} detections)")
    if not args.skip_coco:
        coco_gt = coco_ground_truth(ground_truths, names)
        coco_results = predictions_to_coco_results(predictions, range(1, len(predictions) + 1))
        start = time.perf_counter()
        coco = coco_evaluate(coco_gt, coco_results)
        print(f"pycocotools COCOeval (loadRes + evaluate + accumulate + summarize): {time.perf_counter() - start:.3f} "
              "s  "
              f"AP50 {coco['AP50']:.4f}")


if __name__ == "__main__":
    main()
