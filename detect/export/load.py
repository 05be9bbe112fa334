"""Any model file behind the detection contract, for every command that runs one (infer, serve, eval, the
Detector, the tools):

    loaded = load_model_file(path, backend="auto", device="auto", backend_options=None, weights=None)

A file its backend reads as it is goes to the backend (detect.backends.read_model_file). A checkpoint
given to a backend that runs an ONNX graph (onnxruntime, openvino) is exported here first, with a free
batch size, to a temporary folder: nothing is written beside the checkpoint, and the graph is held in
memory. Exporting lives in this room; the backends only read files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from detect.backends import RUNS_ONNX, read_model_file, reads_natively, resolve_backend
from detect.backends.ready_models import ready_model_name
from detect.detections.loaded import LoadedModel


def load_model_file(path: str | Path, backend: str | None = "auto", device="auto",
                    backend_options: dict | None = None, weights: str | Path | None = None) -> LoadedModel:
    """The LoadedModel of `path` run by `backend` (see the module docstring; `backend_options`, `weights`:
    as detect.backends.read_model_file takes them)."""
    if ready_model_name(path) is None and weights is None:
        resolved = resolve_backend(path, backend)
        if resolved in RUNS_ONNX and not reads_natively(resolved, Path(path)):
            return _exported_first(Path(path), resolved, device, backend_options)
    return read_model_file(path, backend, device, backend_options, weights)


def _exported_first(checkpoint: Path, backend: str, device, backend_options: dict | None) -> LoadedModel:
    from detect.backends import BACKENDS
    from detect.export.onnx import export_onnx

    load = BACKENDS.get(backend)
    if str(device) not in ("auto", "cpu"):
        load(checkpoint, str(device))  # the backend's own one-line refusal, before exporting anything
    with tempfile.TemporaryDirectory(prefix="detect-onnx-") as folder:
        exported = Path(folder) / "model.onnx"
        export_onnx(checkpoint, exported, dynamic_batch=True)
        return load(exported, device, **(backend_options or {}))  # the graph is held in memory
