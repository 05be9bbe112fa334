"""Our one-command training against Ultralytics YOLO11n on the same data, the same split and the same
machine, both from random weights, both scored by our evaluator (VOC07 mAP@0.5 and COCO AP).

    python tools/compare_peer.py --data ../shared/data/raccoon --time 3 --peer-time 10 \\
        --peer-python /path/to/venv/bin/python [--out runs/compare_peer]
    python tools/compare_peer.py --data ../shared/data/raccoon --time 3 --name lr0.04 --set train.lr=0.04

Ours: `detect train --data DIR --time MINUTES --weights none` (the default preset, nothing else set),
scored with `detect eval best.pt --metric all`. The peer: the same split written as YOLO
(`detect data convert --format yolo`), then `yolo11n.yaml` trained with `time=` (hours) and its own
defaults otherwise (640 px, batch 16, no pretrained weights, nothing downloaded), in the Python of
`--peer-python` (Ultralytics is a benchmark dependency only, in its own environment: its
opencv-python would clash with ours). Its best.pt predicts the validation images (conf 0.001, at
most 300 boxes, its default NMS IoU 0.7), and `detect eval --detections` scores those boxes against
the original annotations. Wall times are the commands' own, start to end. Prints one table and adds
its rows to `<out>/compare.json`. `--model` and `--set` change our run (the defaults study in
docs/benchmarks.md runs one arm per call, each named by `--name`). A run already in `<out>` (ours or the
peer's, with its wall time) is scored again, not trained again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.config.presets import DEFAULT_PRESET  # noqa: E402

PEER_SCRIPT = r"""
import json, sys
from pathlib import Path
from ultralytics import YOLO
data_yaml, minutes, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
model = YOLO("yolo11n.yaml")
model.train(data=data_yaml, time=minutes / 60, pretrained=False, device="cpu", project=str(out), name="train",
            exist_ok=True, plots=False, amp=False, verbose=False)
best = YOLO(str(out / "train" / "weights" / "best.pt"))
val_images = sorted(Path(data_yaml).parent.glob("images/val/*"))
records = []
for result in best.predict(source=[str(p) for p in val_images], conf=0.001, max_det=300, device="cpu",
                           verbose=False, stream=True):
    for box, score, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()):
        records.append({"file": Path(result.path).name, "xyxy": box, "score": score, "class": int(cls)})
(out / "predictions.json").write_text(json.dumps(records))
"""


def run(command: list[str], log: Path) -> float:
    """Runs `command`, its output to `log`; returns its wall seconds (a failure is one line and exit 2)."""
    started = time.perf_counter()
    with log.open("w") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"compare_peer: {' '.join(command[:4])} ... failed (exit {done.returncode}); see {log}")
    return seconds


def detect_command(*args) -> list[str]:
    return [sys.executable, "-m", "detect", *map(str, args)]


def scores(eval_json: Path) -> dict:
    results = json.loads(eval_json.read_text())
    return {"voc07": results["voc07"]["map"] * 100, "coco_ap": results["coco"]["AP"] * 100}


def peer_detections(predictions: Path, out: Path) -> Path:
    """The peer's boxes (pixel xyxy) as a results file in the data's own VOC corners (xyxy_to_voc)."""
    import numpy as np

    from detect.data.box_formats import xyxy_to_voc

    records = json.loads(predictions.read_text())
    results = []
    for record in records:
        x0, y0, x1, y1 = xyxy_to_voc(np.asarray([record["xyxy"]], np.float64))[0].tolist()
        # A box of zero height or width (the peer gives some at the border) has corners that cross
        # by one pixel in VOC's inclusive convention: kept, with no area.
        results.append({"image_id": Path(record["file"]).stem, "category_id": record["class"] + 1,
                        "bbox": [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)], "score": record["score"]})
    out.write_text(json.dumps(results))
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--time", type=float, required=True, help="our budget, minutes")
    parser.add_argument("--peer-time", type=float, default=None, help="the peer's budget, minutes (default: --time)")
    parser.add_argument("--peer-python", type=Path, default=None, help="a Python with ultralytics (none: ours only)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare_peer"))
    parser.add_argument("--model", default=None, help="our preset (default: the default preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for our run (repeatable): the arms of the defaults study")
    parser.add_argument("--name", default=None, help="our run's folder under OUT/DATA (default: ours_<time>min)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out / args.data.name
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    name = args.name or f"ours_{args.time:g}min"
    ours = out / name
    wall_file = out / f"{name}.wall_seconds.json"
    if wall_file.is_file() and (ours / "best.pt").is_file():  # trained by an earlier call: scored again
        seconds = json.loads(wall_file.read_text())
    else:
        choices = (["--model", args.model] if args.model else []) + [
            word for setting in args.overrides for word in ("--set", setting)]
        seconds = run(detect_command("train", "--data", args.data, "--time", args.time, "--weights", "none",
                                     "--out", ours, *choices), out / f"{name}.log")
        wall_file.write_text(json.dumps(seconds))
    run(detect_command("eval", ours / "best.pt", "--metric", "all", "--json", ours / "eval.json"), ours / "eval.log")
    settings = "".join(f" {setting}" for setting in args.overrides)
    rows[f"detect {args.model or DEFAULT_PRESET}, --time {args.time:g}{settings}"] = {
        "wall_s": seconds, **scores(ours / "eval.json")}
    if args.peer_python is not None:
        peer_time = args.peer_time or args.time
        yolo_data = out / "yolo_data"
        if not yolo_data.exists():
            run(detect_command("data", "convert", "-o", yolo_data, "--data", args.data, "--format", "yolo", "--copy"),
                out / "convert.log")
        peer = out / f"yolo11n_{peer_time:g}min"
        script = out / "peer.py"
        script.write_text(PEER_SCRIPT)
        wall_file = peer / "wall_seconds.json"
        if wall_file.is_file() and (peer / "predictions.json").is_file():  # trained by an earlier call: scored again
            seconds = json.loads(wall_file.read_text())
        else:
            seconds = run([str(args.peer_python), str(script), str(yolo_data / "data.yaml"), str(peer_time),
                           str(peer)], out / f"yolo11n_{peer_time:g}min.log")
            wall_file.write_text(json.dumps(seconds))
        detections = peer_detections(peer / "predictions.json", peer / "detections.json")
        run(detect_command("eval", "--detections", detections, "--data", args.data, "--metric", "all", "--json",
                           peer / "eval.json"), peer / "eval.log")
        rows[f"Ultralytics YOLO11n, time={peer_time / 60:.4g} h"] = {"wall_s": seconds, **scores(peer / "eval.json")}
    print(f"{args.data.name}: validation split, scored by detect eval")
    print("| run | wall time | VOC07 mAP@0.5 (%) | COCO AP (%) |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['wall_s'] / 60:.2f} min | {row['voc07']:.1f} | {row['coco_ap']:.1f} |")
    earlier = json.loads((out / "compare.json").read_text()) if (out / "compare.json").is_file() else {}
    (out / "compare.json").write_text(json.dumps({**earlier, **rows}, indent=2))  # every arm run so far
    return 0


if __name__ == "__main__":
    sys.exit(main())
