"""What INT8 costs and gains: the float and the INT8 model of `detect export --int8` scored on the
checkpoint's validation split and timed on this machine, side by side in one process. It measures, so it
sits above the export room (detect/export/int8.py quantizes) and the Detector it times with.

    info = export_int8(format, checkpoint, output, calibration=300, overrides=[], **export_options)
        -> detect.export.int8.quantize_checkpoint's info plus "report" (below), also written to
           <output>.json beside the model (report_path_of), and "report_path"

    report = compare_precisions(checkpoint, float_model, int8_model, backend, overrides)
        -> {"backend", "metric" (e.g. "voc07 mAP@0.5"), "split", "num_images", "machine",
            "rows": [{"precision": "fp32" | "int8", "map", "images_per_s"}], "map_change" (points),
            "speedup" (INT8 images/s over float)}

mAP: `detect eval`'s (eval_command.py) at the config's eval.metric and eval.iou_thresh
(COCO: AP50). Speed: images/s of `Detector` calls (eval preprocessing, the graph, postprocess) on
batches of 8 of the split's first 64 images, after one untimed batch; both models on the same images.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from detect.device import cpu_name
from detect.export.int8 import DEFAULT_CALIBRATION, checkpoint_data_config, quantize_checkpoint, report_path_of
from detect.metric_names import HEADLINE_ORDER

SPEED_IMAGES = 64
SPEED_BATCH = 8


def export_int8(format: str, checkpoint: str | Path, output: str | Path, calibration: int = DEFAULT_CALIBRATION,
                overrides=(), **export_options) -> dict:
    """Quantize `checkpoint` for `format`'s runtime into `output` and write the float-against-INT8 report
    beside it (see the module docstring)."""
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="detect-int8-") as folder:
        info = quantize_checkpoint(format, checkpoint, output, Path(folder), calibration, overrides, **export_options)
        report = compare_precisions(checkpoint, info.pop("float_model"), output, info.pop("backend"), overrides)
    report.update(calibration_images=info.pop("calibration_images"), quantized=info["quantized"])
    report_path = report_path_of(output)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    info["report"], info["report_path"] = report, report_path
    layers = info["quantized"]
    info["summary"] = (f"INT8 ({layers['int8']} of {layers['quantizable']} layers), {info['summary']}; "
                       f"float and INT8 compared in {report_path.name}")
    return info


def compare_precisions(checkpoint, float_model: Path, int8_model: Path, backend: str, overrides=()) -> dict:
    from detect.data.build import build_dataset
    from detect.evaluation.eval_command import evaluate_checkpoint

    data_config = checkpoint_data_config(checkpoint, overrides)
    # The exported files lie elsewhere than the run folder: they get the run's split lists spelled out.
    data_overrides = [*overrides, f"data.split_lists={data_config.data.split_lists}"] \
        if data_config.data.split_lists else list(overrides)
    split = data_config.data.val_split
    dataset = build_dataset(data_config.data, split, training=False)
    images = [dataset[index][0] for index in range(min(SPEED_IMAGES, len(dataset)))]
    rows, metric = [], None
    for precision, path in (("fp32", float_model), ("int8", int8_model)):
        evaluation = evaluate_checkpoint(Path(path), None, data_overrides, split, None, "cpu", backend)
        metric, value = headline(evaluation)
        rows.append({"precision": precision, "map": value, "images_per_s": images_per_second(path, backend, images)})
    return {"backend": backend, "metric": metric, "split": split, "num_images": len(dataset),
            "machine": cpu_name(), "rows": rows, "map_change": 100 * (rows[1]["map"] - rows[0]["map"]),
            "speedup": rows[1]["images_per_s"] / rows[0]["images_per_s"]}


def headline(evaluation) -> tuple[str, float]:
    """(its name, the value) of the evaluation's mAP at eval.iou_thresh; for COCO, AP50."""
    config, results = evaluation.config, evaluation.results
    name = [key for key in HEADLINE_ORDER if key in results][0]
    if name == "coco":
        return "COCO AP50", float(results["coco"]["AP50"])
    return f"{name} mAP@{config.eval.iou_thresh:g}", float(results[name]["map"])


def images_per_second(path, backend: str, images: list) -> float:
    from detect.infer.detector import Detector

    detector = Detector.from_file(path, backend=backend, device="cpu", batch_size=SPEED_BATCH)
    detector.detect_arrays(images[:SPEED_BATCH])  # untimed: the runtime's first-call set-up
    started = time.perf_counter()
    for start in range(0, len(images), SPEED_BATCH):
        detector.detect_arrays(images[start:start + SPEED_BATCH])
    return len(images) / (time.perf_counter() - started)


def format_report(report: dict) -> str:
    """The lines `detect export --int8` prints."""
    lines = [f"{report['metric']} on '{report['split']}' ({report['num_images']} images) and images/s on "
             f"{report['machine']}, {report['backend']}:"]
    for row in report["rows"]:
        lines.append(f"  {row['precision']}: {100 * row['map']:.2f} %  {row['images_per_s']:.1f} images/s")
    lines.append(f"  INT8: {report['map_change']:+.2f} points, {report['speedup']:.2f}x the images/s")
    return "\n".join(lines)
