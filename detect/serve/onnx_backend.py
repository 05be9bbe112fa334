"""`detect serve --backend onnxruntime`: the checkpoint exported to ONNX (detect.export) and run by
onnxruntime on the CPU, behind the same `predict(images) -> list[Detections]` as the torch backend.

The checkpoint is exported once at start-up, with a dynamic batch, into a temporary folder. Images go
through `Detector.preprocess` (the exported graph's documented input), padded to the graph's fixed
H x W; the padded outputs (boxes [B, D, 4] in original pixels, scores [B, D], labels [B, D],
num_detections [B]) are cut into one Detections per image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from detect.errors import DetectError
from detect.infer import Detections, Detector


class OnnxRuntimePredictor:
    def __init__(self, detector: Detector, checkpoint: Path, score_floor: float):
        try:
            import onnxruntime
        except ImportError:
            raise DetectError("--backend onnxruntime needs onnx and onnxruntime: pip install -e '.[export]'") from None
        from detect.export import export_model

        self.detector, self.score_floor = detector, score_floor
        with tempfile.TemporaryDirectory(prefix="detect-serve-") as folder:
            path = Path(folder) / f"{checkpoint.stem}.onnx"
            info = export_model(detector.model, detector.config, detector.class_names, path, dynamic_batch=True)
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        detector.model.to(detector.device)  # export moved it to the CPU; it stays usable
        self.input_size = (info["height"], info["width"])

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        batch, image_sizes, scales = self.detector.preprocess(images)
        padded = torch.zeros((batch.shape[0], 3, *self.input_size), dtype=torch.float32)
        height, width = min(batch.shape[2], self.input_size[0]), min(batch.shape[3], self.input_size[1])
        padded[:, :, :height, :width] = batch[:, :, :height, :width]
        boxes, scores, labels, counts = self.session.run(None, {
            "images": padded.numpy(), "image_sizes": image_sizes.numpy(), "scales": scales.numpy()})
        return [self._detections(boxes[i, :n], scores[i, :n], labels[i, :n], image.shape[:2])
                for i, (n, image) in enumerate(zip(counts, images))]

    def _detections(self, boxes, scores, labels, image_size) -> Detections:
        keep = scores >= self.score_floor
        names = self.detector.class_names
        labels = labels[keep].astype(np.int64)
        return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), labels,
                          [names[label - 1] for label in labels], (int(image_size[0]), int(image_size[1])))
