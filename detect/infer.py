"""Run a trained detector on images and video: the `Detector` API and what `detect infer` writes.

    from detect import Detector
    detector = Detector.from_checkpoint("runs/.../best.pt", device="auto")
    found = detector("photo.jpg")                      # one input -> one Detections
    found = detector([array_rgb, pil_image, "b.png"])  # a list -> a list of Detections

Preprocessing is the checkpoint config's eval pipeline (resize and normalise, as in `detect eval`),
padded to multiples of `input.size_divisible` like a training batch; with `input.normalize_on: device`
(the default) the batch travels to the device as uint8 and is normalised there, as in training and
`detect eval` (detect.data.normalise), so both settings give the model the same input. Detections
come from detect.evaluation.predict, the prediction path of `detect eval` (its autocast: bf16 or fp16 on
CUDA when `train.amp`, float32 on CPU), so boxes are xyxy in the original image's pixels. `run_inference` (the
CLI) writes annotated images, annotated videos, and the detections as JSON (images) and JSONL
(video frames).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from detect.data.box_formats import xyxy_to_voc
from detect.data.image_header import DEFAULT_MAX_PIXELS
from detect.data.normalise import batch_to_device
from detect.device import autocast_context, resolve_device
from detect.errors import DataError, DetectError
from detect.outputs import atomic_output
from detect.video_output import VideoOutput

log = logging.getLogger(__name__)

DEFAULT_SCORE_THRESHOLD = 0.5


@dataclass
class Detections:
    """One image's detections, in the original image's pixels.

    boxes float32 [K, 4] xyxy; scores float32 [K] descending; labels int64 [K] in 1..C;
    class_names: K names (label i is the checkpoint's class_names[i - 1]); image_size (h, w).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self) -> list[dict[str, Any]]:
        """[{box: [x1, y1, x2, y2], score, label, class_name}, ...] (JSON-ready)."""
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "label": int(label),
                "class_name": name,
            }
            for box, score, label, name in zip(self.boxes, self.scores, self.labels, self.class_names)
        ]

    def to_coco(self, image_id: int | str, category_ids: Sequence[int] | None = None,
                xyxy_to_corners=None) -> list[dict[str, Any]]:
        """COCO results format: [{image_id, category_id, bbox [x, y, w, h], score}, ...]; category_id is
        category_ids[label - 1] (a COCO-trained checkpoint's own ids), else the label itself.
        `xyxy_to_corners` puts the boxes in the annotation files' convention first (VOC data: the
        XML's 1-based corners). Values are not rounded, so scoring the file gives the model's own mAP."""
        from detect.data.box_formats import xyxy_to_xywh

        corners = xyxy_to_corners(self.boxes) if xyxy_to_corners is not None else self.boxes
        return [
            {
                "image_id": image_id,
                "category_id": int(category_ids[label - 1]) if category_ids else int(label),
                "bbox": [float(value) for value in box],
                "score": float(score),
            }
            for box, score, label in zip(xyxy_to_xywh(corners).tolist(), self.scores, self.labels)
        ]


class Detector:
    """A detector ready for inference: model, eval preprocessing, class names, thresholds.

    Call it on an image path, an HxWx3 uint8 RGB numpy array, a PIL image, or a list of them.
    `score_threshold` keeps detections scoring at least this; `classes` (names) keeps only those
    classes; `batch_size` images go through the model at once. Each may be overridden per call.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config,
        class_names: Sequence[str],
        device: str | torch.device = "auto",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        classes: Sequence[str] | None = None,
        batch_size: int = 8,
        category_ids: Sequence[int] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        from detect.config import Config, validate_config
        from detect.data.transforms import build_transforms
        from detect.models.fuse import fold_batchnorm

        self.config = config if isinstance(config, Config) else validate_config(dict(config))
        self.class_names = list(class_names)
        # COCO-trained checkpoints: the dataset's category id of each label, for COCO results files.
        self.category_ids = list(category_ids) if category_ids is not None else None
        self.device = resolve_device(device)
        # For inference only: BatchNorm folded into the convolutions before it (detect/models/fuse.py).
        self.model = fold_batchnorm(model).to(self.device)
        self.score_threshold = float(score_threshold)
        self.classes = self._class_filter(classes)
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels  # image files whose header declares more are refused undecoded
        self._transform = build_transforms(self.config.input, self.config.augment, train=False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **options) -> "Detector":
        """Load a checkpoint written by `detect train` (weights, resolved config, class names and, for
        COCO data, the category ids)."""
        from detect.checkpoints import load_trained_model

        resolved = resolve_device(device)
        model, config, class_names, category_ids = load_trained_model(Path(path), resolved)
        return cls(model, config, class_names, device=resolved, category_ids=category_ids, **options)

    # -----------------------------------------------------------------------------------------------

    def __call__(self, inputs, score_threshold: float | None = None, classes: Sequence[str] | None = None,
                 batch_size: int | None = None):
        """Detections for one input, or a list of Detections for a list (or tuple) of inputs."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        step = self.batch_size if batch_size is None else int(batch_size)
        results: list[Detections] = []
        for start in range(0, len(items), max(step, 1)):  # read one batch at a time: memory stays flat
            chunk = items[start:start + step]
            arrays = [as_rgb_array(item, self.max_pixels) for item in chunk]
            found = self.detect_arrays(arrays, score_threshold, classes, step)
            for result, item in zip(found, chunk):
                result.source = str(item) if isinstance(item, (str, Path)) else None
            results.extend(found)
        return results[0] if single else results

    def detect_arrays(self, images: list[np.ndarray], score_threshold: float | None = None,
                      classes: Sequence[str] | None = None, batch_size: int | None = None,
                      samples: list | None = None) -> list[Detections]:
        """HxWx3 uint8 RGB arrays -> one Detections each, `batch_size` images per model call.

        `samples`: the images already through `prepare` (the video reader does that on its own
        thread, so preprocessing overlaps the model); None: prepared here.
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        keep_labels = self.classes if classes is None else self._class_filter(classes)
        step = self.batch_size if batch_size is None else int(batch_size)
        if step < 1:
            raise DetectError(f"batch size must be at least 1, got {step}")
        results: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            prepared = samples[start:start + step] if samples is not None else [self.prepare(i) for i in chunk]
            results.extend(self._detect_batch(chunk, prepared, threshold, keep_labels))
        return results

    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, dict]:
        """One HxWx3 uint8 RGB array through the eval pipeline: (image [3, h, w], uint8 pixels or
        float32 normalised as input.normalize_on says, target with image_size and scale)."""
        return self._transform(image, _no_objects(image))

    def preprocess(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The eval pipeline and the collate of `detect eval`: HxWx3 uint8 RGB arrays ->
        (images float32 [B, 3, H, W] normalised, zero-padded to multiples of input.size_divisible;
        image_sizes int64 [B, 2] (h, w) after resize; scales float32 [B, 2] (sx, sy)), on the host.
        This is the exported ONNX model's input (detect/export.py), whatever input.normalize_on says."""
        batch, targets = self._collate([self.prepare(image) for image in images])
        return batch_to_device(batch, targets, torch.device("cpu"), self.config.input.mean, self.config.input.std)

    def _collate(self, samples: list) -> tuple[torch.Tensor, list[dict]]:
        from detect.data.loader import collate

        return collate(samples, self.config.input.size_divisible)

    @torch.inference_mode()
    def _detect_batch(self, images: list[np.ndarray], samples: list, threshold: float, keep_labels) -> list[Detections]:
        from detect.evaluation.predict import predict

        batch, targets = self._collate(samples)
        # As `detect eval`: normalised on the device, bf16/fp16 autocast on CUDA with train.amp.
        predictions = predict(self.model, batch, targets, self.device, self.config.input.mean, self.config.input.std,
                              lambda: autocast_context(self.config, self.device))
        return [self._to_detections(pred, image.shape[:2], threshold, keep_labels)
                for pred, image in zip(predictions, images)]

    def _to_detections(self, prediction: dict, image_size, threshold: float, keep_labels) -> Detections:
        scores = prediction["scores"].float()
        labels = prediction["labels"]
        keep = scores >= threshold
        if keep_labels is not None:
            keep &= torch.isin(labels, torch.as_tensor(sorted(keep_labels), device=labels.device))
        boxes = prediction["boxes"][keep].float().cpu().numpy()
        labels = labels[keep].cpu().numpy().astype(np.int64)
        names = [self.class_names[label - 1] if 0 < label <= len(self.class_names) else str(label) for label in labels]
        return Detections(boxes, scores[keep].cpu().numpy(), labels, names, (int(image_size[0]), int(image_size[1])))

    def _class_filter(self, classes: Sequence[str] | str | None) -> set[int] | None:
        """Class names (a list, or one comma-separated string: detect.class_filter) -> the set of their
        labels (1..C); an empty list or an unknown name is a DetectError."""
        if classes is None:
            return None
        from detect.class_filter import class_labels

        return class_labels(classes, self.class_names)


# ---------------------------------------------------------------------------------------------------
# Inputs, checkpoints, eval preprocessing


def as_rgb_array(item, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A path (its header may declare at most `max_pixels`), an HxWx3 (or HxW) uint8 numpy array, or
    a PIL image -> HxWx3 uint8 RGB array."""
    from detect.data.image_io import read_image

    if isinstance(item, (str, Path)):
        return read_image(Path(item), max_pixels=max_pixels)
    if isinstance(item, np.ndarray):
        array = item
    elif hasattr(item, "convert") and hasattr(item, "size"):  # PIL.Image.Image, without importing PIL
        array = np.asarray(item.convert("RGB"))
    else:
        raise DetectError(
            f"cannot run the detector on a {type(item).__name__}: give a path, a numpy RGB array or a PIL image")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DetectError(f"an image array must be HxWx3 RGB, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise DetectError(f"an image array must be uint8 (0..255), got {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def _no_objects(image: np.ndarray) -> dict:
    """A raw target with no boxes: what the eval pipeline needs besides the image."""
    height, width = image.shape[:2]
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "difficult": np.zeros(0, bool),
            "iscrowd": np.zeros(0, bool), "image_id": None, "orig_size": (height, width)}


# ---------------------------------------------------------------------------------------------------
# detect infer: write annotated images, videos, JSON and JSONL


@dataclass
class InferenceSummary:
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    detections: int = 0
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def run_inference(
    detector: Detector,
    specs: list[str],
    out_dir: Path,
    write_json: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    inputs: Sequence[Path] = (),
) -> InferenceSummary:
    """Run `detector` on every SOURCE in `specs` and write the results under `out_dir`.

    Images: `out_dir/<name>` annotated (names relative to the folder or glob they came from), and
    with `write_json` `out_dir/detections.json` (per image: file, size, detections in original pixels,
    xyxy) and `out_dir/detections_coco.json` (COCO results, category_id = label, or the COCO category
    id for a COCO-trained checkpoint). For a checkpoint trained on VOC-layout data (voc, synthetic)
    the results are what `detect eval --detections` scores against such data: image_id = the file's
    stem, bbox in the XML's 1-based corner convention. Otherwise (COCO data) image_id = the file's
    name, which `detect eval --detections` maps to the annotation file's image id, and bbox in pixels
    as detections.json has them. Videos, cameras, streams:
    `out_dir/<name>.mp4` annotated at the input's frame rate and size, and `out_dir/<name>.jsonl`, one
    line per frame. Output names are unique in a run; no output may replace a source or one of
    `inputs` (the checkpoint).
    """
    from detect.sources import parse_sources

    images, videos = parse_sources(specs)  # every path checked before any work starts
    out_dir = Path(out_dir)
    names = _unique_names([annotated_name(source.name) for source in images])
    images = [replace(source, name=name) for source, name in zip(images, names)]
    videos = [replace(video, name=name) for video, name in zip(videos, _unique_names([v.name for v in videos]))]
    _refuse_to_overwrite_inputs(images, videos, out_dir, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = InferenceSummary()
    started = time.perf_counter()
    if images:
        _infer_images(detector, images, out_dir, write_json, summary, progress)
    for video in videos:
        _infer_video(detector, video, out_dir, summary, max_frames, progress)
    summary.seconds = time.perf_counter() - started
    return summary


def _refuse_to_overwrite_inputs(images, videos, out_dir: Path, other_inputs: Sequence[Path] = ()) -> None:
    """`--out` pointing at the input folder would write annotated copies over the originals."""
    from detect.outputs import refuse_overwrite

    inputs = [source.path for source in images] + [Path(v.target) for v in videos if v.kind == "file"]
    outputs = [out_dir / source.name for source in images]
    outputs += [out_dir / f"{v.name}{suffix}" for v in videos for suffix in (".mp4", ".jsonl")]
    outputs += [out_dir / "detections.json", out_dir / "detections_coco.json"]
    refuse_overwrite("--out", outputs, [*inputs, *other_inputs], given=out_dir)


def _infer_images(detector: Detector, images, out_dir: Path, write_json: bool, summary: InferenceSummary,
                  progress: bool) -> None:
    from tqdm import tqdm

    from detect.data.image_io import read_image

    records, coco_results = [], []
    names = [source.name for source in images]
    voc_layout = detector.config.data.format in ("voc", "synthetic")
    xyxy_to_corners = xyxy_to_voc if voc_layout else None
    bar = tqdm(total=len(images), unit="img", disable=not progress, desc="images")
    for chunk_start in range(0, len(images), detector.batch_size):
        chunk = list(zip(images[chunk_start:chunk_start + detector.batch_size],
                         names[chunk_start:chunk_start + detector.batch_size]))
        arrays, readable = [], []
        for source, name in chunk:
            try:
                arrays.append(read_image(source.path, max_pixels=detector.max_pixels))
                readable.append((source, name))
            except DataError as error:
                log.warning("skipping %s", error)
                summary.skipped.append(str(source.path))
        for (source, name), array, found in zip(readable, arrays, detector.detect_arrays(arrays) if arrays else []):
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, draw_detections(array, found, detector.class_names))
            summary.outputs.append(target)
            summary.images += 1
            summary.detections += len(found)
            image_id = len(records)
            records.append({
                "id": image_id, "file": str(source.path), "output": str(target),
                "height": found.image_size[0], "width": found.image_size[1], "detections": found.to_list(),
            })
            # VOC: the annotation's id, the file stem. COCO: the file's name, which `detect eval
            # --detections` maps to the annotation file's image id (infer has no annotation file).
            results_id = source.path.stem if voc_layout else source.path.name
            coco_results.extend(found.to_coco(results_id, detector.category_ids, xyxy_to_corners))
        bar.update(len(chunk))
    bar.close()
    if write_json:
        ids = detector.category_ids or range(1, len(detector.class_names) + 1)
        categories = [{"id": int(category_id), "label": label, "name": name}
                      for label, (category_id, name) in enumerate(zip(ids, detector.class_names), start=1)]
        json_path = out_dir / "detections.json"
        write_json_file(json_path, {"categories": categories, "images": records})
        coco_path = out_dir / "detections_coco.json"
        write_json_file(coco_path, coco_results)
        summary.outputs += [json_path, coco_path]


# Formats an annotated copy keeps (they hold colour and OpenCV writes them); other inputs (PGM and PBM
# are grey or black and white, GIF animated) get a PNG copy: `scan.pgm` -> `scan.png`.
COLOUR_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def annotated_name(name: str) -> str:
    """The annotated copy's name for an input image's name (relative path)."""
    path = Path(name)
    return name if path.suffix.lower() in COLOUR_OUTPUT_SUFFIXES else str(path.with_suffix(".png"))


def _unique_names(names: list[str]) -> list[str]:
    """Output names, unique in the run: the first source of a name keeps it; a later one gets `_1`,
    `_2` ... before the extension, skipping every name a source has of its own (`a/x.jpg`, `b/x.jpg`,
    `c/x_1.jpg` -> `x.jpg`, `x_2.jpg`, `x_1.jpg`). The same inputs give the same names."""
    own = set(names)
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, count = name, 0
        while candidate in taken or (count and candidate in own):
            count += 1
            path = Path(name)
            candidate = str(path.with_name(f"{path.stem}_{count}{path.suffix}"))
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _infer_video(detector: Detector, video, out_dir: Path, summary: InferenceSummary, max_frames: int | None,
                 progress: bool) -> None:
    from tqdm import tqdm

    from detect.sources import capture_properties, open_capture

    capture = open_capture(video)
    fps, frame_count = capture_properties(capture)
    if max_frames is not None and frame_count is not None:
        frame_count = min(frame_count, max_frames)
    draw = lambda frame, found: draw_detections(frame, found, detector.class_names)  # noqa: E731
    output = VideoOutput(out_dir / f"{video.name}.mp4", out_dir / f"{video.name}.jsonl", fps, draw)
    bar = tqdm(total=frame_count, unit="frame", disable=not progress, desc=video.name)
    batch_size = video_batch_size(detector.batch_size, capture, video.name)
    try:
        for items in _batched(_prefetch(capture, max_frames, detector.prepare, fps), batch_size):
            frames, seconds, samples = (list(column) for column in zip(*items))
            results = detector.detect_arrays(frames, samples=samples)
            output.put(frames, results, seconds)
            summary.detections += sum(len(found) for found in results)
            bar.update(len(frames))
    except KeyboardInterrupt:  # a live stream ends when the user says so; keep what was written
        log.warning("%s: stopped after %d frames", video.target, bar.n)
    finally:
        bar.close()
        capture.release()
        frames_done = output.close()
    if frames_done == 0:
        raise DetectError(f"{video.target}: opened, but no frame could be read")
    summary.videos += 1
    summary.frames += frames_done
    summary.outputs += [output.video_path, output.jsonl_path]


# The most pixels of video frames one model call takes (with their preprocessed copies, they are what
# a batch holds in memory): `--batch-size 100000` must not buffer a whole video.
MAX_VIDEO_BATCH_PIXELS = 32_000_000


def video_batch_size(batch_size: int, capture, name: str) -> int:
    """`batch_size`, or fewer frames where that many would pass MAX_VIDEO_BATCH_PIXELS (said once)."""
    import cv2

    pixels = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) * int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if pixels <= 0 or batch_size * pixels <= MAX_VIDEO_BATCH_PIXELS:
        return batch_size
    capped = max(1, MAX_VIDEO_BATCH_PIXELS // pixels)
    log.warning("%s: %d frames per model call instead of --batch-size %d (at most %d pixels a call)", name, capped,
                batch_size, MAX_VIDEO_BATCH_PIXELS)
    return capped


def _prefetch(capture, max_frames: int | None, prepare, fps: float,
              depth: int = 32) -> Iterator[tuple[np.ndarray, float, Any]]:
    """(frame, its time in seconds, prepare(frame)), decoded and preprocessed on a background thread,
    so that both overlap the model (OpenCV and the resize release the GIL)."""
    from detect.sources import read_timed_frames

    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for frame, seconds in read_timed_frames(capture, max_frames, fps):
                item = (frame, seconds, prepare(frame))
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            items.put(end)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Encodes by `path`'s suffix and writes under a temporary name first (detect.outputs.atomic_output)."""
    import cv2

    ok, encoded = cv2.imencode(path.suffix if path.suffix else ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DetectError(f"{path}: cannot encode the annotated image")
    with atomic_output(path) as temporary:
        encoded.tofile(str(temporary))


def write_json_file(path: Path, value) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(value))


def draw_detections(image_rgb: np.ndarray, found: Detections, class_names: Sequence[str]) -> np.ndarray:
    """A copy of the image with boxes, class names and scores drawn (detect.draw: a colour per class,
    labels on filled backgrounds)."""
    from detect.draw import draw_boxes

    return draw_boxes(image_rgb, found.boxes, found.labels, class_names, found.scores)
