"""The PyTorch backend: the checkpoint's own model on the chosen device (EMA weights where it has them)."""

from __future__ import annotations

from pathlib import Path

from detect.backends.base import BACKENDS, reads_files
from detect.detections.loaded import LoadedModel

reads_files("torch", (".pt", ".pth"))


@BACKENDS.register("torch")
def load_torch(path: str | Path, device: str = "auto") -> LoadedModel:
    from detect.checkpoints import load_trained_model
    from detect.device import resolve_device

    resolved = resolve_device(device)
    model, config, class_names, category_ids = load_trained_model(Path(path), resolved)
    return LoadedModel(model, config, class_names, category_ids, resolved)

