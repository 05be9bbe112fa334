"""Draw a checkpoint's detections on the first images of a split: one PNG per image.

    python tools/draw_detections.py CKPT OUT.png [--num 1] [--split val] [--score 0.3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import torch

from detect.data.build import build_dataset
from detect.data.loader import build_dataloader
from detect.draw import draw_boxes
from detect.engine.checkpoint import build_model_from_checkpoint
from detect.engine.evaluate import run_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, help="PNG path (with --num > 1: NAME_0.png, NAME_1.png, ...)")
    parser.add_argument("--num", type=int, default=1)
    parser.add_argument("--split", default=None)
    parser.add_argument("--score", type=float, default=0.3, help="draw detections scoring at least this")
    args = parser.parse_args()
    model, config, class_names = build_model_from_checkpoint(args.checkpoint, "cpu")
    raw = build_dataset(config.data, args.split or config.data.val_split, training=False)
    subset = torch.utils.data.Subset(raw, range(min(args.num, len(raw))))
    subset.class_names = raw.class_names
    loader = build_dataloader(config.data.model_copy(update={"num_workers": 0}), config.input, config.augment,
                              args.split or config.data.val_split, train=False, batch_size=args.num, raw_dataset=subset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for detections, _ in run_detector(model, loader, torch.device("cpu")):
        for index, detection in enumerate(detections):
            image, _ = raw[index]
            keep = detection["scores"] >= args.score
            drawn = draw_boxes(image, detection["boxes"][keep].numpy(), detection["labels"][keep].numpy(),
                               class_names, detection["scores"][keep].numpy())
            path = args.out if args.num == 1 else args.out.with_name(f"{args.out.stem}_{index}{args.out.suffix}")
            cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            print(f"wrote {path} ({int(keep.sum())} detections of score >= {args.score})")


if __name__ == "__main__":
    main()
