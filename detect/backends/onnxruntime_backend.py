"""The onnxruntime inference backend: `detect infer --backend onnxruntime`, on the CPU.

Runs a graph written by `detect export` (fp32, or INT8 with `--int8`) through detect/backends/
graph_model.py, so it answers exactly like the PyTorch model; `detect.infer.load_detector` exports a
checkpoint first (to a temporary folder: nothing is written beside the checkpoint).

    model = OnnxRuntimeModel("best.onnx", threads=None)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detect.backends.base import BACKENDS, reads_files
from detect.backends.graph_model import ExportedGraph
from detect.detections.graph import OUTPUT_NAMES, loaded_from_metadata
from detect.detections.loaded import LoadedModel
from detect.errors import DetectError


class OnnxRuntimeModel(ExportedGraph):
    """An exported detector run by onnxruntime on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise DetectError("--backend onnxruntime needs onnxruntime: pip install -e '.[export]'") from None
        options = onnxruntime.SessionOptions()
        # Its threads sleep between runs instead of spinning: spinning threads take the cores from the
        # preprocessing between batches (SSDlite320 through Detector on 2 cores: 94 -> 106 to 113 images/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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

    def run_graph(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES), feeds)


reads_files("onnxruntime", (".onnx",), runs_onnx=True)


@BACKENDS.register("onnxruntime")
def load_onnxruntime(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """An .onnx file written by `detect export`, with the config, class names and category ids its
    metadata holds. onnxruntime runs on the CPU here."""
    if str(device) not in ("auto", "cpu"):
        raise DetectError(f"--device {device}: --backend onnxruntime runs on the CPU; use --backend torch")
    path = Path(path)
    if not path.is_file():
        raise DetectError(f"{path}: ONNX file not found")
    return loaded_from_metadata(OnnxRuntimeModel(path, threads), path)
