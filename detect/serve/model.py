"""The served model: a `detect.Detector` loaded once, what `GET /v1/model` says about it, and the
function the batch queue calls.

Predictions go through `Detector.detect_arrays`, the same path as `detect infer`, for both backends
(`torch`, or `onnxruntime`: the graph exported at start-up, detect.backends). Both keep detections from
the lowest score the server keeps (`MODEL_SCORE_THRESHOLD`); each request's threshold is applied to the
result (detect.serve.answers), so that requests with different thresholds share one model call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.infer import Detections, Detector

MODEL_SCORE_THRESHOLD = 0.01


@dataclass
class ServedModel:
    detector: Detector
    name: str
    info: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return self.detector.class_names

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """HxWx3 uint8 RGB arrays -> one Detections each, in one model call (the batch queue sizes it)."""
        return self.detector.detect_arrays(images, score_threshold=MODEL_SCORE_THRESHOLD,
                                           batch_size=max(len(images), 1))

    def labels_of(self, classes: str) -> set[int]:
        """Comma-separated class names (detect.infer.class_filter) -> their labels 1..C; DetectError naming
        what is wrong."""
        from detect.infer.class_filter import class_labels

        return class_labels(classes, self.class_names)


def load_served_model(checkpoint: str | Path, device: str = "auto", backend: str = "auto",
                      weights: str | Path | None = None) -> ServedModel:
    """Load the model file once: the Detector (for onnxruntime and openvino given a checkpoint, its
    exported graph), and the metadata `GET /v1/model` reports (epoch, step, best_metric: None for an
    exported file, which does not keep them). `weights`: a ready model's weight file (`<preset>_coco`)."""
    from detect.backends import is_exported_file, resolve_backend
    from detect.backends.ready_models import ready_model_name
    from detect.checkpoints import load_checkpoint
    from detect.infer import load_detector
    from detect.models.weights import starting_weight_file

    path = Path(checkpoint)
    ready = ready_model_name(path) is not None  # `<preset>_coco`: torchvision's weights file, no checkpoint
    backend = "torch" if ready and backend in (None, "auto") else resolve_backend(path, backend)
    metadata = dict.fromkeys(("epoch", "step", "best_metric"))
    if not ready and not is_exported_file(path):
        state = load_checkpoint(path)  # the training metadata; the weights are built by the Detector below
        metadata = {key: state.get(key) for key in metadata}
        del state
    detector = load_detector(path, backend, device, weights=weights)
    weight_file = (Path(weights) if weights else starting_weight_file(detector.config.model)) if ready else path
    return ServedModel(detector, name=path.name,
                       info={**model_info(detector, weight_file, metadata), "backend": backend})


def model_info(detector: Detector, path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """{name, arch, backbone, device, classes, input {resize, size | min_size/max_size,
    size_divisible}, checkpoint {file, bytes, sha256, epoch, step, best_metric}}."""
    config = detector.config
    if config.input.resize == "fixed":
        input_size = {"resize": "fixed", "size": config.input.size}
    else:
        input_size = {"resize": "keep_ratio", "min_size": config.input.min_size, "max_size": config.input.max_size}
    input_size["size_divisible"] = config.input.size_divisible
    return {
        "name": path.name,
        "arch": config.model.arch,
        "backbone": config.model.backbone,
        "device": str(detector.device),
        "classes": list(detector.class_names),
        "input": input_size,
        "checkpoint": {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path), **metadata},
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
