"""The OpenVINO inference backend: `detect infer --backend openvino` (and `serve`), on the CPU.

Runs the graph of `detect export` (detect/export/onnx.py), either as OpenVINO IR (`detect export
--format openvino`: model.xml with model.bin beside it, fp32 or INT8) or straight from the .onnx file,
through detect/backends/graph_model.py, so it answers exactly like the PyTorch model. OpenVINO's CPU
plugin runs on Intel and AMD CPUs alike. Float layers run in fp32 (INFERENCE_PRECISION_HINT), not in
the bf16 the plugin would pick on CPUs that have it, so fp32 results stay as tight as onnxruntime's.

    model = OpenVinoModel("best.xml", threads=None)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detect.backends.base import BACKENDS, reads_files
from detect.backends.graph_model import ExportedGraph
from detect.detections.graph import OUTPUT_NAMES, loaded_from_metadata, onnx_metadata
from detect.detections.loaded import LoadedModel
from detect.errors import DetectError, reason_line

METADATA_KEY = "detect"  # the IR's rt_info section that holds the export's metadata (detect/export/openvino.py)


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise DetectError("OpenVINO is not installed: pip install -e '.[openvino]'") from None
    return openvino


class OpenVinoModel(ExportedGraph):
    """An exported detector compiled by OpenVINO for the CPU.

    A batch runs as parallel parts, one per CPU stream (OpenVINO's THROUGHPUT hint: on 2 cores, two
    streams of one thread each), each part compiled for its exact shape: both measured faster than one
    request on the whole batch with a free batch size (docs/benchmarks.md, "Deployment"). A graph
    exported with a fixed batch size runs whole, one request at a time."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        openvino = require_openvino()
        self.core = openvino.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for bad files
            raise DetectError(f"{path}: not a readable OpenVINO or ONNX model: {reason_line(error)}") from None
        self.metadata = read_metadata(self.model, Path(path))
        shape = self.model.input("images").get_partial_shape()
        self.batch_size = None if shape[0].is_dynamic else shape[0].get_length()
        self.height, self.width = shape[2].get_length(), shape[3].get_length()
        self.settings = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
        if threads is not None:
            self.settings["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled_by_batch: dict[int, object] = {}  # part size -> the model compiled for it
        self.requests_by_batch: dict[int, list] = {}  # part size -> its infer requests
        try:
            first = self._compiled(self.batch_size or 1)
        except Exception as error:  # noqa: BLE001 - weights that do not fit the graph fail here, not at reading
            raise DetectError(f"{path}: OpenVINO cannot compile this model: {reason_line(error)}") from None
        self.streams = int(first.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def _compiled(self, batch: int):
        if batch not in self.compiled_by_batch:
            model = self.model
            if self.batch_size is None:
                model = self.model.clone()
                model.reshape({port.get_any_name(): [batch, *port.get_partial_shape()[1:]] for port in model.inputs})
            compiled = self.core.compile_model(model, "CPU", self.settings)
            self.compiled_by_batch[batch] = compiled
            self.requests_by_batch[batch] = []
        return self.compiled_by_batch[batch]

    def _request(self, batch: int, slot: int):
        """The `slot`-th infer request of the model compiled for `batch` (one per part running at once)."""
        compiled, requests = self._compiled(batch), self.requests_by_batch[batch]
        while len(requests) <= slot:
            requests.append(compiled.create_infer_request())
        return requests[slot]

    def run_graph(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        count = len(feeds["images"])
        size = count if self.batch_size is not None else -(-count // max(1, min(self.streams, count)))
        running = []
        for slot, start in enumerate(range(0, count, size)):
            batch = min(size, count - start)
            request = self._request(batch, slot)
            part = {name: np.ascontiguousarray(array[start:start + batch]) for name, array in feeds.items()}
            request.start_async(part)
            running.append((request, self.compiled_by_batch[batch]))
        parts = []
        for request, compiled in running:
            request.wait()
            parts.append([np.array(request.get_tensor(compiled.output(name)).data, copy=True) for name in OUTPUT_NAMES])
        return [np.concatenate([part[index] for part in parts]) for index in range(len(OUTPUT_NAMES))]


def read_metadata(model, path: Path) -> dict[str, str]:
    """The export's metadata: from the IR's rt_info, or from an .onnx file's metadata_props."""
    if path.suffix.lower() == ".onnx":
        return onnx_metadata(path)
    if not model.has_rt_info([METADATA_KEY]):
        return {}
    return {str(key): value.astype(str) for key, value in model.get_rt_info()[METADATA_KEY].items()}


reads_files("openvino", (".xml", ".onnx"), runs_onnx=True)


@BACKENDS.register("openvino")
def load_openvino(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """An IR (.xml) written by `detect export --format openvino`, or an .onnx of `detect export`."""
    if str(device) not in ("auto", "cpu"):
        raise DetectError(f"--device {device}: --backend openvino runs on the CPU here; use --backend torch")
    path = Path(path)
    if not path.is_file():
        raise DetectError(f"{path}: model file not found")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise DetectError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing beside it")
    return loaded_from_metadata(OpenVinoModel(path, threads), path)
