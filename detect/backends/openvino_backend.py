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

from detect.backends.base import BACKENDS, LoadedModel
from detect.backends.graph_model import OUTPUT_NAMES, ExportedGraph, loaded_from_metadata
from detect.errors import DetectError

METADATA_KEY = "detect"  # the IR's rt_info section that holds the export's metadata (detect/export/openvino.py)


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise DetectError("OpenVINO is not installed: pip install -e '.[openvino]'") from None
    return openvino


class OpenVinoModel(ExportedGraph):
    """An exported detector compiled by OpenVINO for the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        openvino = require_openvino()
        core = openvino.Core()
        try:
            model = core.read_model(str(path))
        except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for bad files
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise DetectError(f"{path}: not a readable OpenVINO or ONNX model: {first_line}") from None
        self.metadata = read_metadata(model, Path(path))
        shape = model.input("images").get_partial_shape()
        self.batch_size = None if shape[0].is_dynamic else shape[0].get_length()
        self.height, self.width = shape[2].get_length(), shape[3].get_length()
        settings = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            settings["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", settings)
        self.request = self.compiled.create_infer_request()

    def run_graph(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(feeds)
        return [np.array(results[self.compiled.output(name)]) for name in OUTPUT_NAMES]


def read_metadata(model, path: Path) -> dict[str, str]:
    """The export's metadata: from the IR's rt_info, or from an .onnx file's metadata_props."""
    if path.suffix.lower() == ".onnx":
        import onnx

        return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    if not model.has_rt_info([METADATA_KEY]):
        return {}
    return {str(key): value.astype(str) for key, value in model.get_rt_info()[METADATA_KEY].items()}


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
