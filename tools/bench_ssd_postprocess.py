"""Time our batched SSD postprocess against torchvision's SSD postprocess on identical head outputs.

    python tools/bench_ssd_postprocess.py [--batch 8] [--classes 20] [--device cpu] [--repeat 5]

Random head outputs for SSD300 (8,732 default boxes); logits scaled so that many scores pass the
0.01 threshold, as in an early-trained model. Prints milliseconds per batch for each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from benchmarks.peers import torchvision_ssd300  # noqa: E402
from detect.config import SSDConfig  # noqa: E402
from detect.detections.padded import split_detections  # noqa: E402
from detect.device import synchronize  # noqa: E402
from detect.models.default_boxes import box_scales, default_boxes  # noqa: E402
from detect.models.ssd_postprocess import postprocess_detections  # noqa: E402


def _time(function, repeat: int, device: str) -> float:
    function()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    synchronize(device)
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--logit-scale", type=float, default=2.0)
    args = parser.parse_args()

    cfg = SSDConfig()
    maps = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    scales_per_map = box_scales(6, cfg.min_scale, cfg.max_scale, cfg.first_scale)
    priors = (default_boxes(maps, scales_per_map, cfg.aspect_ratios) * 300).to(args.device)
    generator = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(args.batch, len(priors), args.classes + 1, generator=generator) * args.logit_scale
    cls_logits = cls_logits.to(args.device)
    box_regression = (torch.randn(args.batch, len(priors), 4, generator=generator) * 0.5).to(args.device)
    image_sizes = torch.full((args.batch, 2), 300, device=args.device)
    scales = torch.ones(args.batch, 2, device=args.device)
    peer = torchvision_ssd300(args.classes, cfg).to(args.device)

    def ours():
        return split_detections(postprocess_detections(cls_logits, box_regression, priors, image_sizes, scales))

    def theirs():
        return peer.postprocess_detections(
            {"cls_logits": cls_logits, "bbox_regression": box_regression}, [priors] * args.batch,
            [(300, 300)] * args.batch)

    with torch.no_grad():
        ours_ms, theirs_ms = _time(ours, args.repeat, args.device), _time(theirs, args.repeat, args.device)
        detections = sum(len(d["scores"]) for d in ours())
    print(f"batch {args.batch}, {args.classes} classes, {args.device}: {detections} detections")
    print(f"ours {ours_ms:.1f} ms  torchvision {theirs_ms:.1f} ms  speed-up {theirs_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
