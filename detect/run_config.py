"""The config a command's shortcuts resolve to: `--data PATH`, `--model NAME`, `--epochs`, `--time`,
`--image-size`, `--batch-size`, `--weights`, on top of `--config` (or the preset) and under `--set`.

    config, lines = resolve_run_config(config=None, data="~/labels", model="ssdlite320", time_minutes=3)

Order, later winning: the preset's (or --config's) file, the preset's small-data settings, the data
found at --data (format, root, splits, classes from the data), the shortcuts, then every --set. `lines`
are what the command says before it starts: the data found, the starting weights, and the config in
one line. Shared by the CLI and the Python API (detect.train(data=..., model=..., time=...)).
"""

from __future__ import annotations

import socket
from pathlib import Path

from detect.config import Config, load_config
from detect.config.presets import DEFAULT_PRESET, PRESETS, data_overrides
from detect.errors import DetectError

WEIGHT_CHOICES = ("imagenet", "coco", "none")
DOWNLOAD_HOST = ("download.pytorch.org", 443)  # where torchvision's weight files are published
DOWNLOAD_PROBE_SECONDS = 3.0


def resolve_run_config(config: str | None = None, data: str | Path | None = None, model: str | None = None,
                       epochs: int | None = None, time_minutes: float | None = None, image_size: int | None = None,
                       batch_size: int | None = None, weights: str | None = None,
                       overrides: list[str] | None = None, training: bool = True) -> tuple[Config, list[str]]:
    """(config, the lines to say); `training=False` (the data commands) leaves the starting weights alone."""
    if config is not None and model is not None:
        raise DetectError("--config and --model both choose the detector; give one of them")
    if epochs is not None and time_minutes is not None:
        raise DetectError("--epochs and --time both set the run's length; give one of them")
    if config is None and model is None and data is None:
        raise DetectError("give --data PATH (your dataset; --model picks the detector) or --config NAME")
    lines: list[str] = []
    sets: list[str] = []
    preset = PRESETS.get(model or DEFAULT_PRESET) if config is None else None
    if preset is not None:
        sets += list(preset.overrides)
    if data is not None:
        from detect.data.discover import discover_data

        found = discover_data(data)
        sets += data_overrides(found.settings)
        lines.append(f"data: {data} is {found.what}")
    base = config if config is not None else preset.base
    sets += shortcut_overrides(load_config(base, sets), epochs, time_minutes, image_size, batch_size)
    if weights is not None:
        sets.append(f"model.pretrained={weights}")
    resolved = load_config(base, [*sets, *(overrides or [])])
    if preset is not None:
        resolved = resolved.model_copy(update={"name": preset.name})
    if not training:
        return resolved, lines
    if weights is None and preset is not None and not any(item.startswith("model.pretrained=")
                                                          for item in overrides or []):
        resolved, line = available_weights(resolved)
        lines.append(line)
    elif resolved.model.pretrained != "none":
        lines.append(f"starting weights: {resolved.model.pretrained} (model.pretrained)")
    else:
        lines.append("starting weights: random (model.pretrained none)")
    lines.append(summary_line(resolved))
    return resolved, lines


def shortcut_overrides(config: Config, epochs, time_minutes, image_size, batch_size) -> list[str]:
    """--set strings for the shortcut options that were given."""
    sets = []
    if epochs is not None:
        sets += [f"train.epochs={epochs}", "train.time_minutes=null"]
    if time_minutes is not None:
        sets.append(f"train.time_minutes={time_minutes}")
    if batch_size is not None:
        sets.append(f"train.batch_size={batch_size}")
    if image_size is not None:
        if config.input.resize == "fixed":
            sets.append(f"input.size={image_size}")
        else:  # the shorter side; the longer keeps the config's proportion
            ratio = config.input.max_size / config.input.min_size
            sets += [f"input.min_size={image_size}", f"input.max_size={round(image_size * ratio)}"]
    return sets


def available_weights(config: Config) -> tuple[Config, str]:
    """A preset starts from its pretrained weights where they can be had (the torch hub cache, or a
    download that answers within seconds), else from random weights: (config, the line that says which)."""
    from detect.models.weights import starting_weight_file

    pretrained = config.model.pretrained
    if pretrained == "none" or Path(pretrained).expanduser().is_file():
        return config, f"starting weights: {pretrained}"
    cached = starting_weight_file(config.model)
    if cached is None or cached.is_file():
        return config, f"starting weights: {pretrained} ({cached or 'model.pretrained'})"
    if can_download():
        return config, f"starting weights: {pretrained} (downloading {cached.name} into the torch hub cache)"
    model = config.model.model_copy(update={"pretrained": "none"})
    return config.model_copy(update={"model": model}), (
        f"starting weights: random: the {pretrained} weights ({cached.name}) are not in the torch hub cache and "
        f"cannot be downloaded here; --weights FILE starts from a local copy")


def can_download() -> bool:
    try:
        socket.create_connection(DOWNLOAD_HOST, timeout=DOWNLOAD_PROBE_SECONDS).close()
        return True
    except OSError:
        return False


def summary_line(config: Config) -> str:
    """The resolved config in one line: what a run will train, on what, for how long."""
    data, train, model = config.data, config.train, config.model
    size = (f"{config.input.size} px" if config.input.resize == "fixed"
            else f"{config.input.min_size}-{config.input.max_size} px")
    length = f"{train.time_minutes:g} minutes" if train.time_minutes else f"{train.epochs} epochs"
    val = (f"{data.val_fraction:.0%} of {data.train_split} drawn as {data.val_split}" if data.val_fraction
           else data.val_split)
    return (f"config {config.name}: {model.arch} {model.backbone} at {size}, {data.format} data in {data.root} "
            f"({data.train_split} / {val}), {length}, batch {train.batch_size}, lr {train.lr:g}, "
            f"{train.optimizer} {train.scheduler}")
