"""Any model file on any backend, exporting on the fly: a checkpoint given to a backend that runs an
exported graph (onnxruntime, openvino) is exported to ONNX with a free batch size in a temporary
folder, which is gone once the runtime holds the graph; nothing is written beside the checkpoint.
Every other file goes to its backend as it is (detect.backends.load_model_file).

    loaded = load_model_any("best.pt", "openvino", "cpu", {"threads": 2}) -> LoadedModel
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from detect.backends import BACKENDS, RUNS_ONNX, LoadedModel, load_model_file, reads_natively, resolve_backend
from detect.export.onnx import export_onnx


def load_model_any(path: str | Path, backend: str | None = "auto", device="auto",
                   backend_options: dict | None = None) -> LoadedModel:
    backend = resolve_backend(path, backend)
    if backend not in RUNS_ONNX or reads_natively(backend, path):
        return load_model_file(path, backend, device, backend_options)
    load = BACKENDS.get(backend)
    if str(device) not in ("auto", "cpu"):
        load(path, str(device))  # the backend's own one-line refusal, before exporting anything
    with tempfile.TemporaryDirectory(prefix="detect-onnx-") as folder:
        exported = Path(folder) / "model.onnx"
        export_onnx(path, exported, dynamic_batch=True)
        return load(exported, device, **(backend_options or {}))  # the graph is held in memory
