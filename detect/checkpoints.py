"""Loading a trained model for use: `detect eval`, `infer`, `export`, `serve`, the benchmarks, and the
resume of a training run all read checkpoints through here.

A checkpoint is a dict saved with torch.save (detect.engine.train_state lists its keys and writes it).
Use reads `model`, `config`, `class_names`, `category_ids` and `ema`:

    model, config, class_names, category_ids = load_trained_model(path, device)

Loading never runs code from the file (detect.safe_load: tensors and plain data only); a missing,
foreign or hand-broken file, or weights that are not finite, is a one-line CheckpointError.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from detect.errors import CheckpointError
from detect.safe_load import safe_torch_load

REQUIRED_KEYS = ("model", "config", "class_names")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint dict; a missing, unreadable or foreign file is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    state = safe_torch_load(path, "checkpoint", map_location)
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
        raise CheckpointError(f"{path}: not a detect checkpoint (missing {', '.join(missing)})")
    check_field_types(state, path)
    return state


def check_field_types(state: dict, path: str | Path) -> None:
    """CheckpointError when `model` is not a state dict of tensors or `class_names` not a list of
    strings (a foreign or hand-edited file): one line, not a traceback from deep in the loading."""
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
        raise CheckpointError(f"{path}: 'model' must be a state dict (names to tensors), got {type(weights).__name__}")
    names = state["class_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"{path}: 'class_names' must be a list of strings, got {names!r:.60}")
def nonfinite_tensors(weights: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity (one host
    sync for the whole dict)."""
    names = [name for name, value in weights.items() if torch.is_tensor(value) and value.is_floating_point()]
    if not names:
        return []
    flags = [torch.isfinite(weights[name]).all() for name in names]
    if len({flag.device for flag in flags}) == 1:
        finite = torch.stack(flags).tolist()  # one copy to the host for the whole model
    else:
        finite = [bool(flag) for flag in flags]
    return [name for name, ok in zip(names, finite) if not ok]


def check_finite_weights(state: dict, path: str | Path) -> None:
    """Refuses a checkpoint whose model (or EMA) weights are not all finite: such a model detects
    nothing, in silence."""
    for key, weights in (("model", state.get("model")), ("ema", (state.get("ema") or {}).get("module"))):
        if not isinstance(weights, dict):
            continue
        bad = nonfinite_tensors(weights)
        if bad:
            raise CheckpointError(f"{path}: {len(bad)} {key} weight tensor(s) hold NaN or infinite values "
                                  f"(first: {bad[0]}); the run that wrote it diverged")


def config_from_checkpoint(state: dict, path: str | Path = "checkpoint"):
    from detect.config import validate_saved_config
    from detect.errors import ConfigError

    try:
        return validate_saved_config(state["config"])
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is not valid for this version: {error}") from None


def build_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                                use_ema: bool = True) -> tuple[nn.Module, object, list[str]]:
    """(model in eval mode on `device`, its Config, class names). The EMA weights are used when the
    checkpoint has them and `use_ema` (they are what training evaluated)."""
    model, config, class_names, _ = load_trained_model(path, device, use_ema)
    return model, config, class_names


def load_trained_model(path: str | Path, device: str | torch.device = "cpu",
                       use_ema: bool = True) -> tuple[nn.Module, object, list[str], list[int] | None]:
    """build_model_from_checkpoint's three, plus the COCO category ids of the labels (None when the
    model was not trained on COCO data, or by a version that did not store them)."""
    from detect.models.build import build_model
    from detect.models.weights import coco_norm_eps, overwrite_frozen_bn_eps

    state = load_checkpoint(path)
    check_finite_weights(state, path)
    config = config_from_checkpoint(state, path)
    class_names = list(state["class_names"])
    # The checkpoint has all the weights: never fetch or read the pretrained backbone again.
    model_cfg = config.model.model_copy(update={"pretrained": "none"})
    model = build_model(model_cfg, config.input, len(class_names))
    eps = coco_norm_eps(config.model.pretrained, config.model.arch, config.model.backbone)
    if eps is not None:  # the norms' eps of the COCO weights training started from (weights.py)
        overwrite_frozen_bn_eps(model, eps, also_batchnorm=True)
    weights = state["model"]
    if use_ema and state.get("ema") is not None:
        weights = state["ema"]["module"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model of its config ({first_line})") from None
    return model.to(device).eval(), config, class_names, category_ids_of(state, path, len(class_names))


def category_ids_of(state: dict, path: str | Path, num_classes: int) -> list[int] | None:
    """The checkpoint's `category_ids` (one int per class), None where it has none."""
    category_ids = state.get("category_ids")
    if category_ids is None:
        return None
    if not isinstance(category_ids, (list, tuple)) or not all(isinstance(i, int) for i in category_ids):
        raise CheckpointError(f"{path}: category_ids must be a list of integers, got {category_ids!r:.60}")
    if len(category_ids) != num_classes:
        raise CheckpointError(f"{path}: {len(category_ids)} category ids for {num_classes} classes")
    return [int(i) for i in category_ids]
