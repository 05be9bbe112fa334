"""Tiny VOC and COCO datasets written by the tests into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_image(path: Path, height: int, width: int, seed: int = 0, ext: str = ".jpg") -> Path:
    """A random-noise image; the format follows `ext` unless the caller renames the file."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.tobytes())
    return path


def voc_xml(objects: list[tuple], width: int | None = 64, height: int | None = 48) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult]) in VOC 1-based corners."""
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if width else ""
    parts = []
    for name, xmin, ymin, xmax, ymax, *rest in objects:
        difficult = rest[0] if rest else 0
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    return f"<annotation><filename>x.jpg</filename>{size}{''.join(parts)}</annotation>"


def write_voc(root: Path, samples: dict[str, list[tuple]], splits: dict[str, list[str]], height=48, width=64) -> Path:
    """A single-folder VOC dataset: each sample a 64x48 image with the given objects."""
    for index, (image_id, objects) in enumerate(samples.items()):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", height, width, seed=index)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(objects, width, height))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """3 train images (4 objects: 2 cat, 1 dog, 1 difficult dog; one image empty), 1 val image."""
    samples = {
        "a": [("cat", 1, 1, 10, 10), ("dog", 5, 6, 30, 40, 1)],
        "b": [("cat", 20, 10, 64, 48), ("dog", 2, 3, 4, 5)],
        "c": [],
        "d": [("dog", 10, 10, 20, 20)],
    }
    return write_voc(tmp_path / "voc", samples, {"train": ["a", "b", "c"], "val": ["d"]})


def coco_json(images: list[dict], annotations: list[dict], categories: list[dict]) -> dict:
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """train: 3 images (ids 10, 11, 12; 12 has no annotations), 4 annotations (1 crowd);
    categories with gapped ids 3 (cat), 7 (dog), 9 (bird)."""
    root = tmp_path / "coco"
    images = []
    for index, image_id in enumerate((10, 11, 12)):
        write_image(root / "train" / f"{image_id}.jpg", 48, 64, seed=index)
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 64, "height": 48})
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 3, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 1},
        {"id": 3, "image_id": 11, "category_id": 9, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 0},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [10.5, 4.25, 3, 2], "area": 6, "iscrowd": 0},
    ]
    categories = [{"id": 9, "name": "bird"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco_json(images, annotations, categories)))
    return root
