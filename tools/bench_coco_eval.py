"""Time COCO box evaluation: ours (numpy), pycocotools and faster-coco-eval on the same seeded set.

    python tools/bench_coco_eval.py                      # 5,000 images, 80 classes, 100 detections each
    python tools/bench_coco_eval.py --images 500 --json out.json

The set comes from benchmarks/coco_eval_set.py (ground truth drawn like COCO val2017's). Each evaluator
runs in its own process on the same files: the ground truth is indexed before the clock starts (as
a training loop holds it), then the results list is loaded and evaluate + accumulate + summarize run.
Peak memory is the process's peak resident size during that, above what it held before. The 12 stats
of all three are compared (ours must equal pycocotools' to 1e-12). faster-coco-eval is optional
(`pip install faster-coco-eval`); without it its row says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.coco_eval_set import coco_eval_set  # noqa: E402
from detect.device import cpu_name  # noqa: E402

BACKENDS = ("numpy", "pycocotools", "faster-coco-eval")


def run_one(backend: str, gt_path: Path, results_path: Path) -> dict:
    """In a child process: the timing and peak memory of one evaluator."""
    import contextlib
    import io

    import numpy as np

    dataset = json.loads(gt_path.read_text())
    results = json.loads(results_path.read_text())
    if backend == "numpy":
        from detect.evaluation.coco_eval import evaluate_coco_boxes
    elif backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError:
            return {"backend": backend, "missing": "faster-coco-eval is not installed"}
    if backend != "numpy":
        ground_truth = COCO()
        ground_truth.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth.createIndex()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if backend == "numpy":
        stats = evaluate_coco_boxes(dataset, results).stats
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            detections = ground_truth.loadRes(results)
            evaluation = COCOeval(ground_truth, detections, "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        stats = evaluation.stats
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backend": backend, "seconds": seconds, "peak_mib": (peak - before) / 1024,
            "stats": [float(v) for v in np.asarray(stats)]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--detections", type=int, default=100, help="per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_out", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "GT", "RESULTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return
    dataset, results = coco_eval_set(args.seed, args.images, args.classes, args.detections)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        gt_path, results_path = Path(folder) / "gt.json", Path(folder) / "results.json"
        gt_path.write_text(json.dumps(dataset))
        results_path.write_text(json.dumps(results))
        for backend in BACKENDS:
            done = subprocess.run([sys.executable, __file__, "--child", backend, str(gt_path), str(results_path)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    timed = {row["backend"]: row for row in rows if "seconds" in row}
    ours = timed["numpy"]
    print(f"{args.images} images, {args.classes} classes, {len(dataset['annotations'])} boxes, {len(results)} "
          f"detections; CPU: {cpu_name()}")
    print("| evaluator | seconds | ours faster by | peak memory (MiB) | largest stat difference from ours |")
    print("|---|---|---|---|---|")
    for row in rows:
        if "missing" in row:
            print(f"| {row['backend']} | - | - | - | {row['missing']} |")
            continue
        difference = max(abs(a - b) for a, b in zip(row["stats"], ours["stats"]))
        print(f"| {row['backend']} | {row['seconds']:.2f} | {row['seconds'] / ours['seconds']:.1f}x | "
              f"{row['peak_mib']:.0f} | {difference:.1e} |")
    exact = max(abs(a - b) for a, b in zip(timed["pycocotools"]["stats"], ours["stats"])) <= 1e-12
    print(f"numpy equals pycocotools to 1e-12 on all 12 stats: {exact}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"images": args.images, "classes": args.classes,
                                             "detections": len(results), "cpu": cpu_name(), "rows": rows}, indent=2))
    if not exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
