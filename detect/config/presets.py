"""Detector presets: `detect train --data DIR --model NAME`, and `detect models` to list them.

A preset is a built-in config (the architecture, its input and its recipe) with the settings that train
it well on a user's small dataset from the first command: the number of epochs, the batch and the
learning rate that go with it, and evaluation often enough to keep the best model. The data settings
come from `--data` (detect/data/discover.py), never from the base config's dataset.

    preset = PRESETS.get("ssdlite320")   Preset: base config, overrides, what it is for
    config = preset_config(name, data_settings, overrides)

Where a preset's figures come from is said with each (docs/benchmarks.md has the commands).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detect.registry import Registry

DEFAULT_PRESET = "ssdlite320"


# The speeds `detect models` shows: inference (model and postprocess, BatchNorm folded), one image at a
# time, fp32, 2 threads, on a 2-core Intel Xeon (AVX-512), measured by
# `python tools/bench_speed.py --model M --mode infer --device cpu --dtype fp32 --batch-size 1 --threads 2`.
SPEED_MACHINE = "1 image at a time on a 2-core Intel Xeon"


@dataclass(frozen=True)
class Preset:
    name: str
    base: str  # the built-in config it starts from
    what: str  # one line: the model (parameters with 20 classes), and what it is for
    images_per_s: float  # measured CPU inference speed (SPEED_MACHINE)
    overrides: tuple[str, ...] = field(default_factory=tuple)
    # The config whose input scaling and boxes are torchvision's, for its COCO weights (`<name>_coco`,
    # detect/backends/ready_models.py); None: `base` is already.
    coco_base: str | None = None

    @property
    def speed(self) -> str:
        return f"{self.images_per_s:g} images/s ({SPEED_MACHINE})"


PRESETS = Registry("model preset", "--model")


def register(preset: Preset) -> Preset:
    PRESETS.register(preset.name)(preset)
    return preset


# Small-data recipe of SSDlite320 from random weights, chosen by the defaults study (docs/benchmarks.md,
# "Defaults for small data, measured"): batch 4 at lr 0.02 (four times the steps of batch 16 in the same
# minutes; at --time 3 on bccd 59.6 % VOC07 against 4.7 % with batch 16), 320 px, IoU crops and flips, no
# EMA. The earlier batch-16 recipe gave 71.6 % on raccoon in 40 epochs ("Same recipe, same data").
register(Preset(
    "ssdlite320", "voc_ssdlite320",
    "SSDlite320, MobileNetV3-Large, 2.5 M parameters: the fastest, the default; trains on a CPU", 49.4,
    ("train.epochs=40", "train.batch_size=4", "train.base_batch_size=4", "train.lr=0.02",
     "train.warmup_iters=50", "train.eval_every=5", "eval.metric=voc07")))
register(Preset(
    "ssd300", "voc_ssd300",
    "SSD300, VGG16, 26.3 M parameters: the classic SSD, for a GPU", 3.1,
    ("train.epochs=40", "train.eval_every=5", "eval.metric=voc07"), coco_base="voc_ssd300_coco"))
# Batch 4 (lr 0.01 for it) by the same study: at --time 3 from random weights, bccd 33.9 % VOC07 against 2.4 % at
# batch 8, raccoon 22.2 % against 0.0 % (docs/benchmarks.md, "Defaults for small data, measured").
register(Preset(
    "frcnn_mobilenet320", "voc_faster_rcnn_mobilenet320",
    "Faster R-CNN, MobileNetV3-Large FPN at 320 px, 19.0 M parameters: two-stage, fast enough for a CPU", 20.0,
    ("train.epochs=24", "train.batch_size=4", "train.base_batch_size=4", "train.eval_every=4", "eval.metric=voc07")))
register(Preset(
    "frcnn_fpn", "voc_faster_rcnn_fpn",
    "Faster R-CNN, ResNet-50 FPN (torchvision's fasterrcnn_resnet50_fpn), 41.4 M parameters: for a GPU", 0.9,
    ("train.epochs=24", "train.eval_every=4", "eval.metric=voc07")))
register(Preset(
    "frcnn_vgg16", "voc_faster_rcnn",
    "Faster R-CNN, VGG16 and RoIPool (the original paper's model), 137.1 M parameters: for a GPU", 0.5,
    ("train.epochs=24", "train.eval_every=4", "eval.metric=voc07")))


def data_overrides(settings: dict) -> list[str]:
    """--set strings for the data.* settings that discover_data found (values as YAML reads them)."""
    import json

    return [f"data.{key}={'null' if value is None else json.dumps(value)}" for key, value in settings.items()]
