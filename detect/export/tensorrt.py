"""TensorRT engine export (`detect export --format tensorrt`): the ONNX graph of onnx.py (postprocess and
NMS inside) parsed by TensorRT's ONNX parser and built into an engine for the GPU of this machine, in
fp32 (TF32 switched off, so that the engine keeps PyTorch's detections as tightly as the CPU
runtimes). An engine runs only on the GPU model and TensorRT version it was built with. The export's
metadata (class names, config, input size) goes beside it, in `<engine>.json`
(detect/backends/tensorrt_backend.py reads both). Where TensorRT or a GPU is missing, the export is
one line saying which.

A free batch (`--dynamic-batch`) becomes an optimisation profile from 1 to MAX_DYNAMIC_BATCH images
(tuned for --batch-size).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from detect.backends.tensorrt_backend import metadata_path, require_tensorrt
from detect.detections.graph import onnx_metadata
from detect.errors import DetectError
from detect.export.base import EXPORT_SUFFIXES, EXPORTERS
from detect.export.onnx import export_onnx
from detect.outputs import atomic_output

EXPORT_SUFFIXES["tensorrt"] = ".engine"
MAX_DYNAMIC_BATCH = 32
WORKSPACE_BYTES = 4 << 30


@EXPORTERS.register("tensorrt")
def export_tensorrt(checkpoint: str | Path, output: str | Path, opset: int = 17, dynamic_batch: bool = False,
                    image_size: tuple[int, int] | None = None, batch_size: int = 1) -> dict:
    """Write `output` (.engine) and `<output>.json`; returns export_onnx's info."""
    tensorrt = require_tensorrt()
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="detect-tensorrt-") as folder:
        onnx_path = Path(folder) / "model.onnx"
        info = export_onnx(checkpoint, onnx_path, opset, dynamic_batch, image_size, batch_size)
        engine = build_engine(tensorrt, onnx_path, (info["height"], info["width"]), batch_size, dynamic_batch)
        metadata = onnx_metadata(onnx_path)
    with atomic_output(metadata_path(output)) as partial:
        Path(partial).write_text(json.dumps(metadata))
    with atomic_output(output) as partial:
        Path(partial).write_bytes(engine)
    info["summary"] = (f"TensorRT {tensorrt.__version__} engine (metadata in {metadata_path(output).name}), "
                       f"{info['summary']}")
    return info


def build_engine(tensorrt, onnx_path: Path, size: tuple[int, int], batch_size: int, dynamic_batch: bool) -> bytes:
    logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    builder = tensorrt.Builder(logger)
    network = builder.create_network(0)
    parser = tensorrt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise DetectError(f"TensorRT cannot parse the exported graph: {(errors or ['no reason given'])[0]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(tensorrt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.clear_flag(tensorrt.BuilderFlag.TF32)
    if dynamic_batch:
        profile = builder.create_optimization_profile()
        height, width = size
        shapes = {"images": (3, height, width), "image_sizes": (2,), "scales": (2,)}
        for name, tail in shapes.items():
            profile.set_shape(name, (1, *tail), (batch_size, *tail), (max(batch_size, MAX_DYNAMIC_BATCH), *tail))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise DetectError("TensorRT could not build an engine from the exported graph (its log above says why)")
    return bytes(engine)
