"""Train our Faster R-CNN and torchvision's FasterRCNN on the same backbone, data, augmentation, image
size, anchors and schedule, then report both VOC07 mAP@0.5 on the validation split.

    python tools/compare_torchvision_frcnn.py --data ../shared/data/raccoon --out runs/compare \
        [--config voc_faster_rcnn_resnet50] [--set train.epochs=24 --set model.backbone=resnet18 ...]

Both runs use `detect.engine.train.run_training` with one config; only the model differs
(`detect.models.torchvision_peer.build_torchvision_peer` for torchvision's). Weights are random
(`model.pretrained=none`: no ImageNet weights offline) unless overridden. Prints a table and writes
`<out>/compare.json` with each run's best and last mAP and its run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detect.config import Config, load_config
from detect.engine.train import run_training
from detect.models.torchvision_peer import build_torchvision_peer


def voc_dataset_overrides(data_root: Path) -> list[str]:
    """Point a VOC config at `data_root` (train/val splits, classes read from the data)."""
    return [f"data.root={data_root}", "data.format=voc", "data.train_split=train", "data.val_split=val",
            "data.classes=null", "model.pretrained=none", "eval.metric=voc07"]


def eval_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record.get("type") == "eval"]


def train_both(config: Config, out: Path, device: str = "auto", build_loaders_fn=None) -> dict:
    """Train ours, then torchvision's, with `config`; each run's folder and best / last mAP."""
    peer = lambda cfg, num_classes: build_torchvision_peer(cfg.model, cfg.input, num_classes)  # noqa: E731
    summary = {}
    for name, build_model_fn in (("ours", None), ("torchvision", peer)):
        run_dir = run_training(config, output_dir=out / name, device=device,
                               build_loaders_fn=build_loaders_fn, build_model_fn=build_model_fn)
        maps = [record["map"] for record in eval_records(run_dir) if record.get("map") is not None]
        summary[name] = {"run_dir": str(run_dir), "best_map": max(maps, default=None),
                         "last_map": maps[-1] if maps else None}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="a Pascal VOC folder (e.g. ../shared/data/raccoon)")
    parser.add_argument("--config", default="voc_faster_rcnn_resnet50")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
    parser.add_argument("--out", type=Path, default=Path("runs/compare_torchvision_frcnn"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    overrides = voc_dataset_overrides(args.data.resolve()) + args.overrides
    summary = train_both(load_config(args.config, overrides), args.out, args.device)
    summary["config"] = args.config
    summary["overrides"] = overrides
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(summary, indent=2))
    print(f"{'model':<12} {'best mAP@0.5 (VOC07)':>22} {'last':>8}")
    for name in ("ours", "torchvision"):
        best, last = summary[name]["best_map"], summary[name]["last_map"]
        print(f"{name:<12} {best if best is not None else float('nan'):>22.4f} {last if last is not None else float('nan'):>8.4f}")


if __name__ == "__main__":
    main()
