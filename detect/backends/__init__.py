"""Inference backends, one module each, registered in BACKENDS (detect/backends/base.py): `torch`
(the checkpoint's model), `onnxruntime` and `openvino` (an exported graph on the CPU) and `tensorrt`
(an engine on an NVIDIA GPU). Each loads a `LoadedModel`; `detect.infer.Detector` runs any of them the
same way. A new runtime is one module here that registers itself, its name in the import below, and
the file suffixes it reads declared beside it (base.reads_files).

    loaded = BACKENDS.get("onnxruntime")(path, device)
    backend = backend_for_file("model.xml")   # "openvino": what "auto" picks for a file
"""

from pathlib import Path

from detect.backends import onnxruntime_backend, openvino_backend, tensorrt_backend, torch_backend  # noqa: F401
from detect.backends.base import BACKENDS, NATIVE_SUFFIXES, RUNS_ONNX
from detect.detections.loaded import LoadedModel
from detect.errors import DetectError


def backend_for_file(path: str | Path) -> str:
    """The backend `--backend auto` picks for a model file, by its suffix (the first backend listing it)."""
    suffix = Path(path).suffix.lower()
    for backend, suffixes in NATIVE_SUFFIXES.items():
        if suffix in suffixes:
            return backend
    known = ", ".join(sorted({s for suffixes in NATIVE_SUFFIXES.values() for s in suffixes}))
    raise DetectError(f"{path}: no backend reads '{suffix or 'no suffix'}' files (known: {known}); name one with "
                      f"--backend")


def reads_natively(backend: str, path: str | Path) -> bool:
    return Path(path).suffix.lower() in NATIVE_SUFFIXES.get(backend, ())


def is_exported_file(path: str | Path) -> bool:
    """Whether the file's suffix is one an exported model has (.onnx, .xml, .engine, ...), not a checkpoint's."""
    suffix = Path(path).suffix.lower()
    return any(suffix in suffixes for backend, suffixes in NATIVE_SUFFIXES.items() if backend != "torch")


def resolve_backend(path: str | Path, backend: str | None) -> str:
    """`backend` itself, or for "auto" / None the one the file's suffix names."""
    if backend in (None, "auto"):
        return backend_for_file(path)
    BACKENDS.get(backend)  # an unknown name: one line listing the registered ones
    return backend


def read_model_file(path: str | Path, backend: str | None = "auto", device="auto",
                    backend_options: dict | None = None, weights: str | Path | None = None) -> LoadedModel:
    """A model file as it is, loaded by `backend` ("auto": by the file's suffix): a checkpoint's PyTorch
    model (torch, EMA weights where it has them), a ready model (`<preset>_coco`, detect/backends/ready_models.py;
    `weights`: its weight file, read instead of the hub cache's), or an exported file run by its backend.
    `backend_options` go to the backend (onnxruntime, openvino: `threads`). The backends only read files: a
    checkpoint for a graph runtime is exported first by detect.export.load_model_file, which the commands call."""
    from detect.backends.ready_models import load_ready_model, ready_model_name

    if ready_model_name(path) is not None:  # `<preset>_coco`: torchvision's COCO weights, no file of ours
        if backend not in (None, "auto", "torch"):
            raise DetectError(f"{path}: a ready model runs on --backend torch; export it to run it elsewhere")
        return load_ready_model(str(path), device, weights)
    if weights is not None:
        raise DetectError(f"--weights names the weight file of a ready model (<preset>_coco); {path} is a model file "
                          f"of its own: leave --weights out")
    backend = resolve_backend(path, backend)
    if backend in RUNS_ONNX and not reads_natively(backend, Path(path)):
        raise DetectError(f"{path}: {backend} runs an exported graph; export it first (detect export), or load it with "
                          f"detect.export.load_model_file, which does")
    return BACKENDS.get(backend)(Path(path), device, **(backend_options or {}))


__all__ = ["BACKENDS", "LoadedModel", "NATIVE_SUFFIXES", "RUNS_ONNX", "backend_for_file", "is_exported_file",
           "read_model_file", "reads_natively", "resolve_backend"]
