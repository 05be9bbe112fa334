"""The TensorRT inference backend: `detect infer --backend tensorrt`, on an NVIDIA GPU.

Runs an engine built by `detect export --format tensorrt` (detect/export/tensorrt.py: the ONNX graph
of detect/export/onnx.py, postprocess and NMS inside) through detect/backends/graph_model.py, so it
answers like the other backends. An engine holds no metadata of ours: the export writes it beside the
engine (`<engine>.json`: class names, config, input size). TensorRT exists only where a GPU does: on
other machines loading one is a one-line refusal naming what is missing.

    model = TensorRTModel("best.engine")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from detect.backends.base import BACKENDS, reads_files
from detect.backends.graph_model import ExportedGraph
from detect.detections.graph import OUTPUT_NAMES, loaded_from_metadata
from detect.detections.loaded import LoadedModel
from detect.errors import DetectError


def require_tensorrt():
    """The tensorrt module, or one line saying what is missing (the package, or a CUDA GPU)."""
    try:
        import tensorrt
    except ImportError:
        raise DetectError("TensorRT is not installed (it needs an NVIDIA GPU machine): pip install tensorrt") from None
    if not torch.cuda.is_available():
        raise DetectError("TensorRT needs a CUDA GPU, and torch sees none on this machine")
    return tensorrt


def metadata_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_engine_metadata(engine: Path) -> dict:
    """The metadata written beside an engine (`<engine>.json`, detect/export/tensorrt.py): a dict of strings.
    One-line DetectError when it is missing or not a JSON object."""
    path = metadata_path(engine)
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise DetectError(f"{path}: not found; an engine needs the metadata detect export writes beside it") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DetectError(f"{path}: not readable as JSON ({type(error).__name__})") from None
    if not isinstance(metadata, dict):
        raise DetectError(f"{path}: expected a JSON object of metadata, got {type(metadata).__name__}")
    return metadata


class TensorRTModel(ExportedGraph):
    """A deserialized engine; inputs and outputs pass through CUDA tensors that torch allocates."""

    def __init__(self, path: str | Path):
        super().__init__()
        tensorrt = require_tensorrt()
        path = Path(path)
        self.runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DetectError(f"{path}: not an engine this TensorRT ({tensorrt.__version__}) can load")
        self.context = self.engine.create_execution_context()
        self.metadata = read_engine_metadata(path)
        shape = tuple(self.engine.get_tensor_shape("images"))
        self.batch_size = None if shape[0] < 0 else int(shape[0])
        self.height, self.width = int(shape[2]), int(shape[3])

    def run_graph(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {name: torch.from_numpy(np.ascontiguousarray(array)).cuda() for name, array in feeds.items()}
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in OUTPUT_NAMES:
            dtype = torch.int64 if name in ("labels", "num_detections") else torch.float32
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise DetectError("TensorRT: the engine failed to run")
        stream.synchronize()
        return [outputs[name].cpu().numpy() for name in OUTPUT_NAMES]


reads_files("tensorrt", (".engine", ".plan"))


@BACKENDS.register("tensorrt")
def load_tensorrt(path: str | Path, device: str = "auto") -> LoadedModel:
    """An engine written by `detect export --format tensorrt`, with the metadata file beside it."""
    if str(device) not in ("auto", "cuda", "cuda:0"):
        raise DetectError(f"--device {device}: --backend tensorrt runs on the first CUDA GPU")
    require_tensorrt()
    path = Path(path)
    if path.suffix.lower() not in (".engine", ".plan"):
        raise DetectError(f"{path}: --backend tensorrt runs an engine; detect export --format tensorrt builds one")
    if not path.is_file():
        raise DetectError(f"{path}: engine file not found")
    if not metadata_path(path).is_file():
        raise DetectError(f"{path}: {metadata_path(path).name} (written beside it by detect export) is missing")
    return loaded_from_metadata(TensorRTModel(path), path)
