"""What every backend shares: the registry it joins. What it loads, a LoadedModel, is the detection
contract's (detect/detections/loaded.py)."""

from __future__ import annotations

from detect.registry import Registry

BACKENDS = Registry("backend", "--backend")
# What each backend reads, filled where it registers (reads_files): the suffixes of the files it reads as
# they are, in registration order (`--backend auto` picks the first listing a suffix), and those that run an
# exported ONNX graph (given a checkpoint, detect.export.load_model_file exports it for them first).
NATIVE_SUFFIXES: dict[str, tuple[str, ...]] = {}
RUNS_ONNX: list[str] = []


def reads_files(backend: str, suffixes: tuple[str, ...], runs_onnx: bool = False) -> None:
    """Declare, beside a backend's registration, the file suffixes it reads and whether it runs ONNX graphs."""
    NATIVE_SUFFIXES[backend] = tuple(suffixes)
    if runs_onnx:
        RUNS_ONNX.append(backend)
