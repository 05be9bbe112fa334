"""What a resume may change: the config of `detect train --resume` against the checkpoint's own.

A resume continues one run: the model, its input and the optimiser's bookkeeping must stay what the
checkpoint was trained with. Changing them would not fail loudly (weights of the same shapes load
into a model fed another input size), it would silently train something else. Everything else
(epochs, learning rate, evaluation, logging, where the data lies) may change, and each change is
said at the start of the resumed run.

    config_changes(saved, current)        [(key, saved value, current value), ...] in key order
    check_resumable(checkpoint, config, path) -> the allowed changes; CheckpointError for the others
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detect.config import Config, config_to_dict, validate_saved_config
from detect.errors import CheckpointError, ConfigError

# Keys (and sections, ending in a dot) that a resume must keep; model.pretrained is not among them:
# the checkpoint holds the weights, the starting weights are not read again.
FIXED = ("model.", "input.", "train.optimizer", "train.batch_size", "train.accumulate", "train.ema")
FREE_IN_FIXED = ("model.pretrained",)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ, with both values (a key one side lacks shows as None there). The
    config's `name` is left out: a run resumed from a YAML file keeps its model whatever its name."""
    old, new = flatten(saved), flatten(current)
    keys = sorted((set(old) | set(new)) - {"name"})
    return [(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]


def is_fixed(key: str) -> bool:
    return key not in FREE_IN_FIXED and any(key == fixed or (fixed.endswith(".") and key.startswith(fixed))
                                            for fixed in FIXED)


def check_resumable(checkpoint: dict, config: Config, path: str | Path) -> list[tuple[str, Any, Any]]:
    """The changes this resume makes to the checkpoint's config (all allowed); CheckpointError naming
    every change a resume cannot make. data.classes is checked by name elsewhere (check_same_classes)."""
    saved = checkpoint.get("config")
    if not isinstance(saved, dict):
        return []
    try:  # as this version shows it: a config saved by an older one may hold sections that never applied
        saved = config_to_dict(validate_saved_config(saved))
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is not valid for this version: {error}") from None
    changes = [change for change in config_changes(saved, config_to_dict(config)) if change[0] != "data.classes"]
    refused = sorted((change for change in changes if is_fixed(change[0])), key=lambda change: (
        change[0] not in ("model.arch", "model.backbone"), change[0]))  # the change that matters most first
    if refused:
        raise CheckpointError(f"{path}: cannot resume with {describe(refused)}: a resumed run keeps the model, its "
                              f"input and the optimiser of its checkpoint; start a new run from these weights with "
                              f"--set model.pretrained={path}")
    return changes


def describe(changes: list[tuple[str, Any, Any]], most: int = 6) -> str:
    """`input.size 320 -> 512, train.epochs 12 -> 20` (the first `most`, then how many more)."""
    shown = ", ".join(f"{key} {old!r} -> {new!r}" if isinstance(old, str) or isinstance(new, str)
                      else f"{key} {old} -> {new}" for key, old, new in changes[:most])
    return shown + (f" and {len(changes) - most} more" if len(changes) > most else "")
