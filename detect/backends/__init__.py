"""Inference backends, one module each, registered in BACKENDS (detect/backends/base.py): `torch`
(the checkpoint's model) and `onnxruntime` (an exported graph on the CPU). Each loads a `LoadedModel`;
`detect.infer.Detector` runs any of them the same way. A new runtime is one module here that
registers itself, and its name in the import below.

    loaded = BACKENDS.get("onnxruntime")(path, device)
"""

from detect.backends import onnxruntime_backend, torch_backend  # noqa: F401 - they register themselves
from detect.backends.base import BACKENDS, LoadedModel

# Backends that run an ONNX graph: given a checkpoint, `detect.infer.load_detector` exports it first.
RUNS_ONNX = ("onnxruntime",)

__all__ = ["BACKENDS", "LoadedModel", "RUNS_ONNX"]
