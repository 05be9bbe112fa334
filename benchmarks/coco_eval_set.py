"""A seeded COCO-sized evaluation set for timing COCO AP: ground truth drawn like COCO val2017's and a
fixed number of detections per image.

    dataset, results = coco_eval_set(seed=0, images=5000, classes=80, detections_per_image=100)

Ground truth: objects per image from a negative binomial with COCO val2017's mean (36,781 boxes on
5,000 images: 7.36) and spread (about 1 image in 20 without objects, a long tail to 60), classes with a
skewed frequency (the first holds about a quarter of the boxes, as `person` does in COCO), box sides
log-uniform so that about 40 % are small, 35 % medium and 25 % large (COCO's shares by area), 1 % of
them crowd regions. Detections: each image's `detections_per_image`, 60 % near its objects (jittered,
mostly of the right class) and the rest anywhere, scores uniform.
"""

from __future__ import annotations

import numpy as np

COCO_VAL_MEAN_OBJECTS = 36781 / 5000
IMAGE_SIZE = (480, 640)  # h, w


def coco_eval_set(seed: int = 0, images: int = 5000, classes: int = 80,
                  detections_per_image: int = 100) -> tuple[dict, list[dict]]:
    """(COCO ground-truth dict, COCO results list); the same seed gives the same set."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    class_weights = 1.0 / np.arange(1, classes + 1) ** 0.9
    class_weights /= class_weights.sum()
    counts = np.minimum(rng.negative_binomial(1.2, 1.2 / (1.2 + COCO_VAL_MEAN_OBJECTS), images), 60)
    image_entries, annotations, results = [], [], []
    for image_id, count in enumerate(counts, start=1):
        image_entries.append({"id": image_id, "height": height, "width": width, "file_name": f"{image_id:06d}.jpg"})
        boxes = _boxes(rng, count, height, width)
        labels = rng.choice(classes, size=count, p=class_weights) + 1
        crowd = rng.random(count) < 0.01
        for box, label, is_crowd in zip(boxes.tolist(), labels.tolist(), crowd.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": int(is_crowd)})
        results += _detections(rng, image_id, boxes, labels, detections_per_image, classes, class_weights)
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, classes + 1)]
    return {"images": image_entries, "annotations": annotations, "categories": categories}, results


def _boxes(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """[count, 4] xywh inside the image; sides log-uniform from 8 to 400 pixels, aspect 1:3 to 3:1."""
    side = np.exp(rng.uniform(np.log(8), np.log(400), count))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), count))
    w = np.minimum(side * np.sqrt(aspect), width - 1)
    h = np.minimum(side / np.sqrt(aspect), height - 1)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return np.round(np.stack([x, y, w, h], axis=1), 2)


def _detections(rng, image_id: int, boxes: np.ndarray, labels: np.ndarray, count: int, classes: int,
                class_weights: np.ndarray) -> list[dict]:
    height, width = IMAGE_SIZE
    near = int(round(count * 0.6)) if len(boxes) else 0
    picks = rng.integers(0, max(len(boxes), 1), near)
    jitter = rng.normal(0, 0.1, (near, 4)) * np.repeat(boxes[picks, 2:], 2, axis=1) if near else np.zeros((0, 4))
    near_boxes = boxes[picks] + jitter if near else np.zeros((0, 4))
    near_labels = np.where(rng.random(near) < 0.85, labels[picks] if near else 0,
                           rng.choice(classes, size=near, p=class_weights) + 1)
    far_boxes = _boxes(rng, count - near, height, width)
    far_labels = rng.choice(classes, size=count - near, p=class_weights) + 1
    all_boxes = np.concatenate([near_boxes, far_boxes])
    all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], 1.0)
    all_boxes = np.round(all_boxes, 2)
    scores = np.round(rng.random(count), 5)
    return [{"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)}
            for box, label, score in zip(all_boxes.tolist(), np.concatenate([near_labels, far_labels]).tolist(),
                                         scores.tolist())]
