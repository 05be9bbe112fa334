"""Typed choices of the command line, each read off what owns the names (the config schema, the preset
registry, the video writer), so `--help` lists them, a wrong name is one line with the choices
(detect.cli.main), and no list is kept in step by hand.

    metric: Optional[Metric] = typer.Option(None, "--metric")

Backend and export-format names stay plain strings, checked by their registries (one line listing them):
their owners register on import, and importing them (torch, the runtimes) would slow every command.
"""

from __future__ import annotations

from typing import Literal

from detect.config.presets import PRESETS
from detect.config.schema import EvalConfig
from detect.video_writer import CODECS

Metric = EvalConfig.model_fields["metric"].annotation  # detect/metric_names.py: the names and "all"
CocoBackend = EvalConfig.model_fields["coco_backend"].annotation
Preset = Literal[tuple(PRESETS)]
Codec = Literal[tuple(CODECS)]
UnknownClass = Literal["raise", "skip"]  # what `detect eval --detections` does with a class it does not know
