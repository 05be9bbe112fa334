"""Deployment table: one checkpoint on every CPU runtime and precision, mAP and speed side by side.

    python tools/bench_deploy.py runs/main_job/train/best.pt [--out runs/bench_deploy] [--calibration 300] \
        [--image-size H,W] [--set data.root=...] [--batch-size 8] [--threads N] [--json FILE]

Exports the checkpoint (free batch) to ONNX and OpenVINO IR in fp32, and to both in INT8 (`detect
export --int8`: onnxruntime QDQ, OpenVINO NNCF, calibrated on --calibration training images), into
--out, then measures the checkpoint in PyTorch (eager, BatchNorm unfolded as `detect eval` runs it)
and the four files on the checkpoint's validation split with tools/eval_map.py's benchmark
(benchmarks/map_table.py): mAP, images/s end to end and model-only, latency at batch 1. The last
column is each row's model-only images/s over PyTorch's. Prints markdown; writes OUT/deploy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from detect.errors import DetectError  # noqa: E402

# (file name, --format, INT8?)
EXPORTS = (("fp32.onnx", "onnx", False), ("fp32.xml", "openvino", False), ("int8.onnx", "onnx", True),
           ("int8.xml", "openvino", True))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_deploy"))
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--image-size", default=None, help="H,W of the exported graphs (keep-ratio configs; "
                                                           "default: the padded max size, as detect export)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="default: OUT/deploy.json")
    args = parser.parse_args(argv)
    for name in ("calibration", "batch_size", "threads", "max_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def export_all(args) -> list[Path]:
    """The four exported files in args.out (each written again on every run), with the INT8 reports."""
    from detect.evaluation.int8_report import export_int8
    from detect.export import EXPORTERS, parse_image_size

    args.out.mkdir(parents=True, exist_ok=True)
    options = {"dynamic_batch": True, "image_size": parse_image_size(args.image_size)}
    files = []
    for name, format, int8 in EXPORTS:
        path = args.out / name
        print(f"exporting {path} ...", file=sys.stderr)
        if int8:
            export_int8(format, args.checkpoint, path, args.calibration, args.overrides, **options)
        else:
            EXPORTERS.get(format)(args.checkpoint, path, **options)
        files.append(path)
    return files


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        from benchmarks.map_table import format_table, run_benchmark
        from detect.export.int8 import report_path_of

        files = export_all(args)
        report = run_benchmark([args.checkpoint, *files], None, args.overrides, None, "cpu", args.batch_size,
                               max_images=args.max_images, progress=lambda text: print(text, file=sys.stderr))
    except DetectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["int8_reports"] = {path.name: json.loads(report_path_of(path).read_text())
                              for path in files if report_path_of(path).is_file()}
    print(format_table(report))
    out_json = args.json_out or args.out / "deploy.json"
    out_json.write_text(json.dumps(report, indent=2))
    print(f"wrote {out_json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
