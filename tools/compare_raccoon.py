"""Train ours and torchvision's detector of the same shape on the same data, report both VOC07 mAP@0.5.

    python tools/compare_raccoon.py --arch faster_rcnn|ssd|both [--data ../shared/data/raccoon]
        [--epochs N] [--max-images N] [--device auto|cuda|cpu] [--out runs/compare_raccoon] [--set a.b=c ...]
        [--faster-rcnn-config voc_faster_rcnn_resnet50] [--ssd-config voc_ssd300] [--same-init]

Faster R-CNN: `voc_faster_rcnn_resnet50` (or `--faster-rcnn-config`, e.g. `voc_faster_rcnn` for VGG16)
against torchvision's FasterRCNN on the same trunk; SSD: `voc_ssd300` (or `--ssd-config voc_ssdlite320`) against
torchvision's SSD300 VGG16 with our default boxes, or torchvision's SSD on our trunk for other backbones (both from
benchmarks.peers.build_peer, behind benchmarks.torchvision_adapter). Both runs go through the project's
engine (`detect.engine.run.run_training`) with one config, so data, augmentation, image size,
batches, optimizer and schedule are the same; only the model differs. torchvision's model gets our
already resized and normalized batches (its own resize and normalization are switched off).
Weights are random (`model.pretrained=none`) unless overridden; with `--same-init` both start from the
same random weights (ours, copied into torchvision's model by benchmarks.shared_weights), so the two
runs differ only in the models' code. `--max-images N` trains and
evaluates on the first N images of each split (a quick check). Writes `<out>/compare.json`: per
arch and model, the run folder, best and last mAP, wall seconds and the median training images/s;
a model whose training stops (a non-finite loss, say) gets its `error` there, and the other still
trains.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers  # noqa: E402
from benchmarks.shared_weights import copy_weights  # noqa: E402
from benchmarks.torchvision_adapter import TorchvisionAdapter  # noqa: E402
from detect.config import Config, load_config  # noqa: E402
from detect.errors import DetectError  # noqa: E402

CONFIGS = {"faster_rcnn": "voc_faster_rcnn_resnet50", "ssd": "voc_ssd300"}
ARCH_FAMILIES = {"faster_rcnn": ("faster_rcnn",), "ssd": ("ssd", "ssdlite")}  # --ssd-config voc_ssdlite320 too


def build_peer(config: Config, num_classes: int) -> nn.Module:
    """torchvision's counterpart of the configured model, behind our model contract."""
    return TorchvisionAdapter(peers.build_peer(config, num_classes), num_classes)


def first_images(build_loaders_fn, max_images: int | None):
    """`build_loaders_fn` with each split cut to its first `max_images` images (same batch sizes)."""
    if max_images is None:
        return build_loaders_fn

    def build(config: Config, distributed: bool):
        loaders = build_loaders_fn(config, distributed)
        sizes = (config.train.batch_size, config.eval.batch_size)
        return tuple(
            DataLoader(_Subset(loader.dataset, range(min(max_images, len(loader.dataset)))),
                       batch_size=size, shuffle=index == 0, collate_fn=loader.collate_fn)
            for index, (loader, size) in enumerate(zip(loaders, sizes))
        )

    return build


class _Subset(Subset):
    """A Subset that keeps the dataset's `class_names` (the engine reads them)."""

    @property
    def class_names(self):
        return self.dataset.class_names


def same_init_builders(config: Config):
    """(ours, torchvision's) model builders whose models start from the same weights: each builds
    ours from the same seed, and torchvision's gets a copy of them."""
    from detect.engine import run

    build_model = run.build_starting_model  # taken now: during a run, that attribute is one of these builders

    def build_ours(run_config: Config, num_classes: int) -> nn.Module:
        torch.manual_seed(config.train.seed)
        return build_model(run_config, num_classes)

    def build_torchvision(run_config: Config, num_classes: int) -> nn.Module:
        peer = build_peer(run_config, num_classes)
        if not copy_weights(run_config, build_ours(run_config, num_classes), peer.model):
            raise DetectError(f"--same-init: {run_config.model.arch} on {run_config.model.backbone}: our weights "
                              f"do not fit torchvision's model")
        return peer

    return build_ours, build_torchvision


def train_both(config: Config, out: Path, device: str = "auto", build_loaders_fn=None,
               same_init: bool = False) -> dict:
    """Train ours, then torchvision's, with `config`; each run's folder and best / last mAP."""
    from detect.engine import run

    loaders = build_loaders_fn or run.build_loaders
    builders = same_init_builders(config) if same_init else (run.build_starting_model, build_peer)
    summary = {}
    for name, build_model in zip(("ours", "torchvision"), builders):
        torch.manual_seed(config.train.seed)
        start = time.perf_counter()
        try:
            # The run builds its data and model through these two module attributes: the peer and
            # the cut loaders take their places for this run only.
            with (mock.patch.object(run, "build_loaders", loaders),
                  mock.patch.object(run, "build_starting_model", build_model)):
                run_dir = run.run_training(config, output_dir=out / name, device=device)
        except DetectError as error:  # e.g. a non-finite loss: record it and still train the other model
            summary[name] = {"run_dir": str(out / name), "error": str(error), "best_map": None, "last_map": None,
                             "wall_s": round(time.perf_counter() - start, 1), "train_images_per_s": None}
            print(f"{name}: training stopped: {error}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        maps = [r["map"] for r in records if r.get("type") == "eval" and r.get("map") is not None]
        rates = [r["images_per_s"] for r in records if r.get("type") == "train" and "images_per_s" in r]
        summary[name] = {"run_dir": str(run_dir), "best_map": max(maps, default=None),
                         "last_map": maps[-1] if maps else None, "wall_s": round(seconds, 1),
                         "train_images_per_s": round(statistics.median(rates), 1) if rates else None}
    return summary


def dataset_overrides(data_root: Path) -> list[str]:
    return [f"data.root={data_root}", "data.format=voc", "data.train_split=train", "data.val_split=val",
            "data.classes=null", "model.pretrained=none", "eval.metric=voc07"]


def default_data() -> Path:
    shared = os.environ.get("DETECT_SHARED_DATA")
    root = Path(shared) if shared else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return root / "raccoon"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["faster_rcnn", "ssd", "both"], default="both")
    parser.add_argument("--data", type=Path, default=None, help="a Pascal VOC folder (default: shared raccoon)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/compare_raccoon"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--faster-rcnn-config", default=CONFIGS["faster_rcnn"])
    parser.add_argument("--ssd-config", default=CONFIGS["ssd"])
    parser.add_argument("--same-init", action="store_true",
                        help="both models start from the same random weights (ours, copied into torchvision's)")
    args = parser.parse_args(argv)
    configs = {"faster_rcnn": args.faster_rcnn_config, "ssd": args.ssd_config}
    data = (args.data or default_data()).resolve()
    archs = ["faster_rcnn", "ssd"] if args.arch == "both" else [args.arch]
    report = {}
    for arch in archs:
        overrides = dataset_overrides(data) + ([f"train.epochs={args.epochs}"] if args.epochs else []) + args.overrides
        config = load_config(configs[arch], overrides)
        if config.model.arch not in ARCH_FAMILIES[arch]:
            parser.error(f"--{arch.replace('_', '-')}-config {configs[arch]} is a {config.model.arch} config")
        loaders = None if args.max_images is None else first_images(_engine_loaders(), args.max_images)
        report[arch] = train_both(config, args.out / arch, args.device, loaders, args.same_init)
        report[arch]["overrides"] = overrides
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(report, indent=2))
    print("| arch | model | mAP@0.5 best (last) | wall s | train images/s |\n|---|---|---|---|---|")
    for arch, result in report.items():
        for name in ("ours", "torchvision"):
            run = result[name]
            maps = f"{_fmt(run['best_map'])} ({_fmt(run['last_map'])})"
            result_cell = f"stopped: {run['error']}" if "error" in run else maps
            print(f"| {arch} | {name} | {result_cell} | {run['wall_s']} | {run['train_images_per_s']} |")
    return 0


def _engine_loaders():
    from detect.engine.run import build_loaders

    return build_loaders


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
