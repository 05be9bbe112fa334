"""What the backends that run an exported graph share (onnxruntime, OpenVINO, TensorRT): the graph of
`detect export` (its contract: detect/detections/graph.py) behind our model contract, so
`Detector` (detect/infer/detector.py) runs it exactly as the PyTorch model: same eval preprocessing,
same per-image results.

    outputs = model(images, image_sizes)   # images float32 [B, 3, h, w] normalized (h, w at most the
                                           # graph's H, W): {"boxes" [B, D, 4] resized pixels,
                                           # "scores" [B, D], "labels" [B, D], "num_detections" [B]}
    detections = model.postprocess(outputs, image_sizes, scales)   # padded dicts, original pixels

The batch is zero-padded to the graph's fixed H x W (as `detect export` documents) and, for a graph
traced with a fixed batch size, cut into chunks of that size (the last one padded with empty images).
A runtime's module subclasses ExportedGraph: it sets batch_size (None: free), height, width and
metadata (the export's key -> JSON string), and runs one chunk in `run_graph`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detect.detections.graph import padded_from_graph
from detect.errors import DetectError


class ExportedGraph(nn.Module):
    batch_size: int | None
    height: int
    width: int
    metadata: dict[str, str]

    def run_graph(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's four outputs (OUTPUT_NAMES order) for one chunk of inputs."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets=None) -> dict[str, torch.Tensor]:
        if targets is not None:
            raise DetectError("an exported model predicts only; train the PyTorch model")
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
        slots = int(self.metadata.get("max_detections", 0))
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
        boxes, scores, labels, num = self.run_graph(feeds)
        return {"boxes": torch.from_numpy(np.asarray(boxes[:count], np.float32)),
                "scores": torch.from_numpy(np.asarray(scores[:count], np.float32)),
                "labels": torch.from_numpy(np.asarray(labels[:count], np.int64)),
                "num_detections": torch.from_numpy(np.asarray(num[:count], np.int64))}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        """The graph's padded detections (detect/detections/padded.py), boxes in original pixels."""
        return padded_from_graph(outputs, scales)
