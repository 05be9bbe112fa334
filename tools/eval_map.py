"""Benchmark table: mAP (VOC07, VOC12, COCO AP / AP50), images/s end to end and model-only, latency
p50 / p95 at batch 1 and peak GPU memory, one row per model file and backend, on one split.

    python tools/eval_map.py runs/a/best.pt runs/b/best.pt [--config X] [--set data.root=...] \
        [--split val] [--device auto] [--batch-size 8] [--json bench.json] \
        [--torchvision fasterrcnn_resnet50_fpn --torchvision peer=runs/tv/best.pt] [--max-images 500]
    python tools/eval_map.py runs/a/best.pt runs/a/best.int8.onnx runs/a/best.int8.xml \
        --backend torch --backend onnxruntime --backend openvino

A model file is a checkpoint or what `detect export` wrote (.onnx, OpenVINO .xml, TensorRT .engine;
fp32 or INT8). Each checkpoint gets a row per `--backend` (default torch; onnxruntime and openvino
export it in float first), each exported file a row on its own backend; the rows name backend and
precision, and the last column is each row's model-only images/s over the first row's.

The data come from --config (default: the first checkpoint's own config) with --set applied; each
checkpoint runs with its own input pipeline. --torchvision NAME adds a row for torchvision's
detection model NAME with random weights, NAME=PATH with a local state dict; `peer` is torchvision's
FasterRCNN on our backbone (benchmarks/peers.py). How each number is measured:
benchmarks/map_table.py. Prints markdown; --json writes the numbers (per-class AP included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from benchmarks.map_table import format_table, run_benchmark  # noqa: E402
from detect.errors import DetectError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, metavar="MODEL",
                        help="checkpoints (.pt) and exported models (.onnx, .xml, .engine)")
    parser.add_argument("--backend", dest="backends", action="append", default=None,
                        help="run each checkpoint on this backend (repeatable; default torch)")
    parser.add_argument("--config", "-c", default=None, help="config name or YAML (default: the first checkpoint's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
    parser.add_argument("--split", default=None, help="split to run on (default: data.val_split)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--torchvision", action="append", default=[], metavar="NAME[=PATH]",
                        help="add a torchvision detection model row (repeatable)")
    parser.add_argument("--max-images", type=int, default=None, help="only the split's first N images")
    parser.add_argument("--model-images", type=int, default=64, help="images timed model-only (default 64)")
    parser.add_argument("--latency-images", type=int, default=32, help="images timed at batch 1 (default 32)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU (default: torch's)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    for name in ("batch_size", "max_images", "model_images", "latency_images", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.json_out is not None:
            from detect.outputs import refuse_overwrite, writable_file

            refuse_overwrite("--json", [args.json_out], args.checkpoints)
            writable_file("--json", args.json_out)
        report = run_benchmark(args.checkpoints, args.config, args.overrides, args.split, args.device,
                               args.batch_size, args.torchvision, args.max_images, args.model_images,
                               args.latency_images, args.warmup, progress=lambda text: print(text, file=sys.stderr),
                               backends=args.backends or ["torch"])
    except DetectError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
