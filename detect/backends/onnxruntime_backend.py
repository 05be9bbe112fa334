"""The onnxruntime inference backend: `detect infer --backend onnxruntime`.

An exported detector (detect/export/onnx.py: model, postprocess and NMS in one ONNX graph) behind our
model contract, so `Detector` (detect/infer/detector.py) runs it exactly as the PyTorch model: same
eval preprocessing, same per-image results.

    model = OnnxRuntimeModel("best.onnx")
    outputs = model(images, image_sizes)   # images float32 [B, 3, h, w] normalized (h, w at most the
                                           # graph's H, W): {"boxes" [B, D, 4] resized pixels,
                                           # "scores" [B, D], "labels" [B, D], "num_detections" [B]}
    detections = model.postprocess(outputs, image_sizes, scales)   # B dicts, original pixels

The batch is zero-padded to the graph's fixed H x W (as `detect export` documents) and, for a graph
traced with a fixed batch size, cut into chunks of that size (the last one padded with empty images).
The backend takes an .onnx file written by `detect export`; `detect.infer.load_detector` exports a
checkpoint first (to a temporary folder: nothing is written beside the checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detect.backends.base import BACKENDS, LoadedModel
from detect.errors import DetectError


class OnnxRuntimeModel(nn.Module):
    """An exported detector run by onnxruntime on the CPU (see the module docstring)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise DetectError("--backend onnxruntime needs onnxruntime: pip install -e '.[export]'") from None
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DetectError(f"{path}: not a readable ONNX model: {first_line}") from None
        images = self.session.get_inputs()[0]
        self.batch_size = images.shape[0] if isinstance(images.shape[0], int) else None  # None: dynamic
        self.height, self.width = int(images.shape[2]), int(images.shape[3])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets=None) -> dict[str, torch.Tensor]:
        if targets is not None:
            raise DetectError("an ONNX model predicts only; train the PyTorch model")
        height, width = images.shape[-2:]
        if height > self.height or width > self.width:
            raise DetectError(f"input {height} x {width} is larger than the exported {self.height} x {self.width}; "
                              f"export again with --image-size")
        if images.shape[0] == 0:
            return self._nothing()
        images = F.pad(images.float(), (0, self.width - width, 0, self.height - height))
        step = self.batch_size or images.shape[0]
        parts = [self._run(images[start:start + step], image_sizes[start:start + step])
                 for start in range(0, images.shape[0], step)]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _nothing(self) -> dict[str, torch.Tensor]:
        """The outputs for an empty batch, without running the graph: a graph exported with a free
        batch size cannot run on zero images (its reshapes infer a size from the element count)."""
        slots = self.session.get_outputs()[0].shape[1]  # a name, not a number, in a free-batch graph
        slots = slots if isinstance(slots, int) else int(self.metadata.get("max_detections", 0))
        return {"boxes": torch.zeros(0, slots, 4), "scores": torch.zeros(0, slots),
                "labels": torch.zeros(0, slots, dtype=torch.int64), "num_detections": torch.zeros(0, dtype=torch.int64)}

    def _run(self, images: torch.Tensor, image_sizes: torch.Tensor) -> dict[str, torch.Tensor]:
        count = images.shape[0]
        if self.batch_size is not None and count < self.batch_size:  # a fixed-batch graph: pad with empties
            missing = self.batch_size - count
            images = F.pad(images, (0, 0, 0, 0, 0, 0, 0, missing))
            image_sizes = torch.cat([image_sizes, image_sizes[:1].expand(missing, -1)])
        feeds = {
            "images": images.cpu().numpy(),
            "image_sizes": image_sizes.cpu().numpy().astype(np.int64),
            "scales": np.ones((images.shape[0], 2), dtype=np.float32),  # boxes in resized pixels
        }
        boxes, scores, labels, num = self.session.run(["boxes", "scores", "labels", "num_detections"], feeds)
        return {"boxes": torch.from_numpy(boxes[:count]), "scores": torch.from_numpy(scores[:count]),
                "labels": torch.from_numpy(labels[:count]), "num_detections": torch.from_numpy(num[:count])}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        """The graph's padded detections (detect/models/detections.py), boxes in original pixels."""
        boxes = outputs["boxes"] / scales.float().cpu().repeat(1, 2).unsqueeze(1)
        return {"boxes": boxes, "scores": outputs["scores"], "labels": outputs["labels"].long(),
                "num": outputs["num_detections"].long()}


@BACKENDS.register("onnxruntime")
def load_onnxruntime(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """An .onnx file written by `detect export`, with the config, class names and category ids its
    metadata holds. onnxruntime runs on the CPU here."""
    from detect.config import validate_saved_config

    if str(device) not in ("auto", "cpu"):
        raise DetectError(f"--device {device}: --backend onnxruntime runs on the CPU; use --backend torch")
    path = Path(path)
    if not path.is_file():
        raise DetectError(f"{path}: ONNX file not found")
    model = OnnxRuntimeModel(path, threads)
    if "config" not in model.metadata:
        raise DetectError(f"{path}: no 'config' in its metadata; export it again with this version of detect export")
    config = validate_saved_config(json.loads(model.metadata["config"]))
    category_ids = json.loads(model.metadata["category_ids"]) if "category_ids" in model.metadata else None
    return LoadedModel(model, config, json.loads(model.metadata["class_names"]), category_ids, "cpu")

