"""A synthetic shapes dataset, the offline default: coloured shapes on textured, noisy backgrounds.

`data.format: synthetic` reads the VOC dataset in `data.root`, and generates one there first (the
`data.synth` settings, said in one line) only where the folder is absent, empty, or holds an earlier
generation: never over a user's files. A model file's config never generates (`existing_data_only`).
`generate_synthetic(out, format="voc"|"coco"|"yolo", ...)` writes
- VOC:  out/Annotations/<id>.xml, out/JPEGImages/<id>.jpg, out/ImageSets/Main/{train,val}.txt
- COCO: out/annotations/instances_{train,val}.json, images in out/train/ and out/val/
- YOLO: out/data.yaml, out/images/{train,val}/<id>.jpg, out/labels/{train,val}/<id>.txt

Five classes (SYNTHETIC_CLASSES) with varied colour, aspect (0.5..2), rotation and size (about 5% to
60% of the image side); shapes may overlap (an object keeps at least half of its pixels visible);
about one image in ten has no objects. Each box is the tight box of the object's visible pixels, taken
from the drawn mask. Everything comes from one numpy Generator seeded with `seed`, and JPEGs are
written by OpenCV at a fixed quality, so the same seed writes the same bytes.

Every generation is built in a folder beside `out` and moved into place whole (detect.outputs.
staged_folder), with a marker file (MARKER: what was generated, its settings and every file written):
a folder is replaced by a new generation only when it holds nothing but such an earlier one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from detect.data.formats import DATASET_FORMATS
from detect.data.voc import VOCDataset, build_voc
from detect.data.yolo import data_yaml, label_line
from detect.errors import DataError
from detect.outputs import is_empty_folder, staged_folder

log = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ["circle", "square", "triangle", "star", "ring"]

JPEG_QUALITY = 90
EMPTY_IMAGE_FRACTION = 0.1
MAX_OBJECTS = 6
MIN_VISIBLE_FRACTION = 0.5  # an earlier shape may be covered, but never by more than half
SIZE_RANGE = (0.05, 0.6)  # shape size as a fraction of the image side
MARKER = ".detect-synthetic.json"


def generate_synthetic(
    out: str | Path,
    format: str = "voc",
    num_images: int = 200,
    image_size: int = 320,
    seed: int = 0,
    val_fraction: float = 0.2,
    option: str = "detect data synth -o",
) -> dict:
    """Writes the dataset into `out` (absent, empty, or an earlier generation, which it replaces whole);
    returns {num_images, num_train, num_val, num_objects, classes}. `option` names `out` in errors."""
    if format not in WRITERS:
        raise ValueError(f"format must be one of {', '.join(WRITERS)}, got {format!r}")
    settings = {"format": format, "num_images": num_images, "image_size": image_size, "seed": seed,
                "val_fraction": val_fraction}
    with staged_folder(option, out, own=is_earlier_generation) as staging:
        splits = draw_dataset(num_images, image_size, seed, val_fraction)
        WRITERS[format](staging, splits, image_size)
        write_marker(staging, "images", settings)
    return {
        "num_images": num_images,
        "num_train": len(splits["train"]),
        "num_val": len(splits["val"]),
        "num_objects": sum(len(item[2]) for items in splits.values() for item in items),
        "classes": list(SYNTHETIC_CLASSES),
    }


def draw_dataset(num_images: int, image_size: int, seed: int, val_fraction: float) -> dict:
    """{"train": [...], "val": [...]} of (image id, image BGR, boxes, labels, areas), all from `seed`."""
    rng = np.random.default_rng(seed)
    num_val = int(round(num_images * val_fraction))
    val_indices = set(rng.permutation(num_images)[:num_val].tolist())
    splits: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {"train": [], "val": []}
    for index in range(num_images):
        image, boxes, labels, areas = draw_image(rng, image_size)
        split = "val" if index in val_indices else "train"
        splits[split].append((f"{index:06d}", image, boxes, labels, areas))
    return splits


# ---------------------------------------------------------------------------------------------------
# the marker of a generation


def write_marker(folder: Path, kind: str, settings: dict) -> None:
    """MARKER in `folder`: {"generated_by", "kind" (images or video), "settings", "files"} with every
    file under `folder` (paths relative to it, "/"-separated)."""
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir())
    record = {"generated_by": "detect data synth", "kind": kind, "settings": settings, "files": files}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n")


def read_marker(folder: Path) -> dict | None:
    """The marker's record, or None where there is none or it is not one of ours."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("files"), list):
        return None
    return record


def is_earlier_generation(folder: Path) -> bool:
    """True when `folder` holds an earlier generation and nothing else: every file in it is one the
    marker lists (a file a user added since makes it theirs)."""
    record = read_marker(folder)
    if record is None:
        return False
    listed = set(record["files"]) | {MARKER}
    return all(path.relative_to(folder).as_posix() in listed for path in Path(folder).rglob("*") if not path.is_dir())


# ---------------------------------------------------------------------------------------------------
# drawing


def draw_image(rng: np.random.Generator, size: int):
    """-> (image uint8 BGR [S, S, 3], boxes float32 [N, 4] xyxy, labels int64 [N] 1..5, areas int [N])."""
    image = draw_background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)  # which object each pixel shows, -1: background
    full_areas: list[int] = []
    labels: list[int] = []
    num_objects = 0 if rng.random() < EMPTY_IMAGE_FRACTION else int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(num_objects):
        for _attempt in range(10):
            label = int(rng.integers(1, len(SYNTHETIC_CLASSES) + 1))
            mask = draw_shape_mask(rng, SYNTHETIC_CLASSES[label - 1], size)
            if mask.any() and leaves_others_visible(owner, mask, full_areas):
                break
        else:
            continue
        colour = pick_colour(rng, image, mask)
        image[mask] = colour
        owner[mask] = len(labels)
        full_areas.append(int(mask.sum()))
        labels.append(label)
    add_noise(rng, image)
    boxes, areas = visible_boxes(owner, len(labels))
    return image, boxes, np.array(labels, dtype=np.int64), areas


def draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour blotches plus a few thin distractor lines (texture that is not an object)."""
    coarse = rng.integers(40, 216, size=(4, 4, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 6))):
        start = tuple(int(v) for v in rng.integers(0, size, 2))
        end = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(image, start, end, colour, thickness=int(rng.integers(1, 3)))
    return image


def draw_shape_mask(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """A bool [S, S] mask of one shape with random size, aspect, rotation and position."""
    extent = size * np.exp(rng.uniform(np.log(SIZE_RANGE[0]), np.log(SIZE_RANGE[1])))
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    half_w, half_h = extent * np.sqrt(aspect) / 2, extent / np.sqrt(aspect) / 2
    # The centre keeps most of the shape inside; a shape may still be cut by the border.
    centre = rng.uniform(0.1 * size, 0.9 * size, 2)
    angle = rng.uniform(0, 2 * np.pi) if name in ("triangle", "star") else rng.uniform(-0.4, 0.4)
    mask = np.zeros((size, size), dtype=np.uint8)
    if name in ("circle", "ring"):
        axes = (max(1, int(half_w)), max(1, int(half_h)))
        centre_px = (int(centre[0]), int(centre[1]))
        degrees = float(np.degrees(angle))
        cv2.ellipse(mask, centre_px, axes, degrees, 0, 360, 1, thickness=-1)
        if name == "ring":
            inner = (max(1, int(axes[0] * 0.55)), max(1, int(axes[1] * 0.55)))
            cv2.ellipse(mask, centre_px, inner, degrees, 0, 360, 0, thickness=-1)
    else:
        points = unit_polygon(name)
        points = points * np.array([half_w, half_h])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = points @ rotation.T + centre
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def unit_polygon(name: str) -> np.ndarray:
    """Corners of the shape in [-1, 1]^2, float [K, 2]."""
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    if name == "triangle":
        angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    raise ValueError(f"unknown shape {name!r}")


def leaves_others_visible(owner: np.ndarray, mask: np.ndarray, full_areas: list[int]) -> bool:
    """True when drawing `mask` on top keeps at least MIN_VISIBLE_FRACTION of every earlier object, and
    every object (this one too) still spans 2 pixels each way: a box one pixel thin is 0 wide in VOC's
    inclusive corners, which the VOC reader refuses as degenerate."""
    if not spans_two_pixels(mask):
        return False
    if not full_areas:
        return True
    visible = np.bincount(owner[owner >= 0], minlength=len(full_areas))
    covered = np.bincount(owner[mask & (owner >= 0)], minlength=len(full_areas))
    if not np.all(visible - covered >= MIN_VISIBLE_FRACTION * np.array(full_areas)):
        return False
    remaining = np.where(mask, -1, owner)
    return all(spans_two_pixels(remaining == index) for index in np.flatnonzero(covered))


def spans_two_pixels(mask: np.ndarray) -> bool:
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows.size > 0 and rows[-1] > rows[0] and columns[-1] > columns[0]


def pick_colour(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random colour that stands out from what lies under the shape."""
    under = image[mask].mean(axis=0)
    colour = rng.integers(0, 256, 3)
    for _ in range(10):
        if np.abs(colour - under).sum() >= 120:
            break
        colour = rng.integers(0, 256, 3)
    return colour.astype(np.uint8)


def add_noise(rng: np.random.Generator, image: np.ndarray) -> None:
    sigma = rng.uniform(3.0, 12.0)
    noisy = image.astype(np.int16) + rng.normal(0.0, sigma, image.shape).astype(np.int16)
    np.clip(noisy, 0, 255, out=noisy)
    image[:] = noisy


def visible_boxes(owner: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight xyxy box (pixel edges: last pixel + 1) and pixel count of each object's visible pixels."""
    boxes = np.zeros((num_objects, 4), dtype=np.float32)
    areas = np.zeros(num_objects, dtype=np.int64)
    for index in range(num_objects):
        rows, cols = np.nonzero(owner == index)
        boxes[index] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        areas[index] = len(rows)
    return boxes, areas


# ---------------------------------------------------------------------------------------------------
# writing


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buffer.tobytes()


def write_voc(out: Path, splits: dict, image_size: int) -> None:
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        for image_id, image, boxes, labels, _areas in items:
            (out / "JPEGImages" / f"{image_id}.jpg").write_bytes(encode_jpeg(image))
            (out / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, boxes, labels, image_size))
        ids = "".join(f"{item[0]}\n" for item in items)
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    trainval = sorted(item[0] for items in splits.values() for item in items)
    (out / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in trainval))


def voc_xml(image_id: str, boxes: np.ndarray, labels: np.ndarray, image_size: int) -> str:
    """VOC XML; corners 1-based inclusive (xmin = first pixel + 1, xmax = last pixel + 1)."""
    objects = []
    for box, label in zip(boxes.astype(int).tolist(), labels.tolist()):
        x0, y0, x1, y1 = box
        objects.append(
            "  <object>\n"
            f"    <name>{SYNTHETIC_CLASSES[label - 1]}</name>\n"
            "    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
            f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>\n"
            "  </object>\n"
        )
    return (
        "<annotation>\n  <folder>JPEGImages</folder>\n"
        f"  <filename>{image_id}.jpg</filename>\n"
        f"  <size><width>{image_size}</width><height>{image_size}</height><depth>3</depth></size>\n"
        "  <segmented>0</segmented>\n" + "".join(objects) + "</annotation>\n"
    )


def write_coco(out: Path, splits: dict, image_size: int) -> None:
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i, "name": name, "supercategory": "shape"} for i, name in enumerate(SYNTHETIC_CLASSES, 1)]
    annotation_id = 1
    for split, items in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id, image, boxes, labels, areas in items:
            (out / split / f"{image_id}.jpg").write_bytes(encode_jpeg(image))
            images.append(
                {"id": int(image_id), "file_name": f"{image_id}.jpg", "width": image_size, "height": image_size})
            for box, label, area in zip(boxes.astype(int).tolist(), labels.tolist(), areas.tolist()):
                x0, y0, x1, y1 = box
                annotations.append({
                    "id": annotation_id, "image_id": int(image_id), "category_id": label,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": 0,
                })
                annotation_id += 1
        data = {"images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(data, indent=1) + "\n")


def write_yolo(out: Path, splits: dict, image_size: int) -> None:
    """Ultralytics' layout: data.yaml, images/<split>/, labels/<split>/ (`class cx cy w h`, 0..1)."""
    for split, items in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image_id, image, boxes, labels, _areas in items:
            (out / "images" / split / f"{image_id}.jpg").write_bytes(encode_jpeg(image))
            lines = [label_line(label - 1, box, image_size, image_size, decimals=6)
                     for box, label in zip(boxes.astype(int).tolist(), labels.tolist())]
            (out / "labels" / split / f"{image_id}.txt").write_text("".join(lines))
    (out / "data.yaml").write_text(data_yaml(list(splits), SYNTHETIC_CLASSES))


WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo}


@DATASET_FORMATS.register("synthetic")
def build_synthetic(data_cfg, split: str, keep_difficult: bool) -> VOCDataset:
    """`data.format: synthetic`: the shapes in `data.root`, generated there first when missing; the class
    names default to SYNTHETIC_CLASSES."""
    ensure_synthetic(data_cfg)
    if data_cfg.classes is None:
        data_cfg = data_cfg.model_copy(update={"classes": list(SYNTHETIC_CLASSES)})
    return build_voc(data_cfg, split, keep_difficult)


def has_voc_layout(root: Path) -> bool:
    return (root / "ImageSets" / "Main").is_dir() and (root / "Annotations").is_dir()


def ensure_synthetic(data_cfg) -> None:
    """Generates the synthetic dataset (VOC layout) in `data.root` unless a VOC dataset is already there:
    only into an absent or empty folder, or over an earlier generation; a folder of other files is a
    one-line DataError (a mistyped data.root or format must not turn a user's folder into shapes)."""
    root = Path(data_cfg.root)
    if has_voc_layout(root):
        return
    if root.exists() and not (is_empty_folder(root) or (root.is_dir() and is_earlier_generation(root))):
        raise DataError(f"data.root {root}: holds no VOC dataset (ImageSets/Main and Annotations) to read, and "
                        "data.format synthetic generates only into a new or empty folder; check data.root, or "
                        "set data.format to the format of the data there")
    synth = data_cfg.synth
    log.warning(f"data.root {root}: no dataset there; generating the synthetic shapes ({synth.num_images} images "
                f"of {synth.image_size} px, seed {synth.seed}) into it")
    generate_synthetic(
        root, format="voc", num_images=synth.num_images, image_size=synth.image_size, seed=synth.seed,
        val_fraction=synth.val_fraction, option="data.root",
    )


def existing_data_only(data_cfg, source: str | Path):
    """`data_cfg` as read from a model file (`source`): synthetic data is read where it is, as VOC, and
    never generated, since a file handed to us must not decide where we write. A DataError when
    `data.root` holds no dataset (the user names the data to score on)."""
    if data_cfg.format != "synthetic":
        return data_cfg
    root = Path(data_cfg.root)
    if not has_voc_layout(root):
        raise DataError(f"{source}: its config's data (synthetic shapes in {root}) is not there, and data is never "
                        "generated from a model file's config; name the data with --config (and --set data.root=...)")
    classes = data_cfg.classes if data_cfg.classes is not None else list(SYNTHETIC_CLASSES)
    return data_cfg.model_copy(update={"format": "voc", "classes": classes})
