"""Run a trained detector on images and video: the `Detector` API and what `detect infer` writes.

    from detect import Detector
    detector = Detector.from_checkpoint("runs/.../best.pt", device="auto")
    found = detector("photo.jpg")                      # one input -> one Detections
    found = detector([array_rgb, pil_image, "b.png"])  # a list -> a list of Detections

Preprocessing is the checkpoint config's eval pipeline (resize and normalize, as in `detect eval`),
padded to multiples of `input.size_divisible` like a training batch; with `input.normalize_on: device`
(the default) the batch travels to the device as uint8 and is normalized there, as in training and
`detect eval` (detect.data.normalize), so both settings give the model the same input. Detections
come from detect.detections.predict, the prediction path of `detect eval` (its autocast: bf16 or fp16 on
CUDA when `train.amp`, float32 on CPU), so boxes are xyxy in the original image's pixels. `run_inference` (the
CLI) writes annotated images, annotated videos, and the detections as JSON (images) and JSONL
(video frames).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from detect.data.image_header import DEFAULT_MAX_PIXELS
from detect.detections.eval_inputs import collated, eval_transform, graph_inputs, prepared
from detect.device import autocast_context, resolve_device
from detect.errors import DetectError

log = logging.getLogger(__name__)

DEFAULT_SCORE_THRESHOLD = 0.5


@dataclass
class Detections:
    """One image's detections, in the original image's pixels.

    boxes float32 [K, 4] xyxy; scores float32 [K] descending; labels int64 [K] in 1..C;
    class_names: K names (label i is the checkpoint's class_names[i - 1]); image_size (h, w);
    track_ids: in a tracked video (`infer --track`), int64 [K], each detection's track id, 0 for one
    that belongs to no confirmed track; else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self) -> list[dict[str, Any]]:
        """[{box: [x1, y1, x2, y2], score, label, class_name}, ...] (JSON-ready); tracked, each also has
        track_id (null for a detection in no confirmed track)."""
        records = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "label": int(label),
                "class_name": name,
            }
            for box, score, label, name in zip(self.boxes, self.scores, self.labels, self.class_names)
        ]
        if self.track_ids is not None:
            for record, track_id in zip(records, self.track_ids):
                record["track_id"] = int(track_id) or None
        return records

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
        from detect.config import Config, validate_saved_config
        from detect.models.fuse import fold_batchnorm

        self.config = config if isinstance(config, Config) else validate_saved_config(dict(config))
        self.class_names = list(class_names)
        # COCO-trained checkpoints: the dataset's category id of each label, for COCO results files.
        self.category_ids = list(category_ids) if category_ids is not None else None
        self.device = resolve_device(device)
        # For inference only: BatchNorm folded into the convolutions before it (detect/models/fuse.py).
        self.model = fold_batchnorm(model).to(self.device)
        self.score_threshold = float(score_threshold)
        # The highest score of any candidate the model gave so far, under the threshold too (None: none):
        # what `detect infer` quotes when no detection reaches the threshold.
        self.best_score: float | None = None
        self.classes = self._class_filter(classes)
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels  # image files whose header declares more are refused undecoded
        self._transform = eval_transform(self.config)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **options) -> "Detector":
        """Load a checkpoint written by `detect train` (weights, resolved config, class names and, for
        COCO data, the category ids) with the torch backend."""
        return load_detector(path, "torch", device, **options)

    @classmethod
    def from_file(cls, path: str | Path, backend: str | None = "auto", device: str | torch.device = "auto",
                  threads: int | None = None, weights: str | Path | None = None, **options) -> "Detector":
        """Any model file behind one interface: a checkpoint (.pt), an ONNX graph (.onnx, fp32 or INT8),
        OpenVINO IR (.xml) or a TensorRT engine (.engine), run by `backend` ("auto": by the suffix; a
        checkpoint runs on onnxruntime or openvino once exported to a temporary folder). `threads`:
        the CPU threads of onnxruntime or OpenVINO. A ready model, `<preset>_coco` (e.g. "ssdlite320_coco"),
        runs torchvision's COCO weights from the hub cache, or from `weights` (its file) offline."""
        backend_options = {"threads": threads} if threads is not None else None
        return load_detector(path, backend, device, backend_options, weights, **options)

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
        float32 normalized as input.normalize_on says, target with image_size and scale)."""
        return prepared(image, self._transform)

    def preprocess(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The eval pipeline and the collate of `detect eval`: HxWx3 uint8 RGB arrays ->
        (images float32 [B, 3, H, W] normalized, zero-padded to multiples of input.size_divisible;
        image_sizes int64 [B, 2] (h, w) after resize; scales float32 [B, 2] (sx, sy)), on the host.
        This is the exported ONNX model's input (detect/export/onnx.py), whatever input.normalize_on says."""
        return graph_inputs([self.prepare(image) for image in images], self.config.input)

    @torch.inference_mode()
    def _detect_batch(self, images: list[np.ndarray], samples: list, threshold: float, keep_labels) -> list[Detections]:
        from detect.detections.predict import predict

        batch, targets = collated(samples, self.config.input)
        # As `detect eval`: normalized on the device, bf16/fp16 autocast on CUDA with train.amp.
        predictions = predict(self.model, batch, targets, self.device, self.config.input.mean, self.config.input.std,
                              lambda: autocast_context(self.config, self.device))
        return [self._to_detections(pred, image.shape[:2], threshold, keep_labels)
                for pred, image in zip(predictions, images)]

    def _to_detections(self, prediction: dict, image_size, threshold: float, keep_labels) -> Detections:
        scores = prediction["scores"].float()
        labels = prediction["labels"]
        considered = torch.ones_like(scores, dtype=torch.bool)
        if keep_labels is not None:
            considered = torch.isin(labels, torch.as_tensor(sorted(keep_labels), device=labels.device))
        if bool(considered.any()):  # for the hint when nothing reaches the threshold (best_score)
            best = float(scores[considered].max())
            self.best_score = best if self.best_score is None else max(self.best_score, best)
        keep = considered & (scores >= threshold)
        boxes = prediction["boxes"][keep].float().cpu().numpy()
        labels = labels[keep].cpu().numpy().astype(np.int64)
        names = [self.class_names[label - 1] if 0 < label <= len(self.class_names) else str(label) for label in labels]
        return Detections(boxes, scores[keep].cpu().numpy(), labels, names, (int(image_size[0]), int(image_size[1])))

    def _class_filter(self, classes: Sequence[str] | str | None) -> set[int] | None:
        """Class names (a list, or one comma-separated string: detect.infer.class_filter) -> the set of their
        labels (1..C); an empty list or an unknown name is a DetectError."""
        if classes is None:
            return None
        from detect.infer.class_filter import class_labels

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


def load_detector(checkpoint: str | Path, backend: str | None = "auto", device: str | torch.device = "auto",
                  backend_options: dict | None = None, weights: str | Path | None = None, **options) -> Detector:
    """The `Detector` of `detect infer`, `detect serve`, the tools and the Python API, for any model file
    and a registered backend (detect.backends: `torch`, `onnxruntime`, `openvino`, `tensorrt`); "auto"
    (or None) picks the backend by the file's suffix (.pt torch, .onnx onnxruntime, .xml openvino,
    .engine tensorrt). A backend that runs an ONNX graph, given a checkpoint, gets it exported first
    with a free batch size, to a temporary folder (nothing is written beside the checkpoint).
    `backend_options` go to the backend (onnxruntime, openvino: `threads`), `options` to the Detector;
    `weights`: a ready model's weight file (`<preset>_coco`, read from it instead of the hub cache).
    One-line DetectError for an unknown backend or a device the backend cannot use."""
    from detect.export.load import load_model_file

    loaded = load_model_file(checkpoint, backend, device, backend_options, weights)
    return Detector(loaded.model, loaded.config, loaded.class_names, device=loaded.device,
                    category_ids=loaded.category_ids, **options)
