"""Video inference frames/s, end to end (decode, preprocess, model, postprocess, drawing, encode).

    python tools/bench_video.py --config voc_faster_rcnn --frames 200 --size 1280x720 --device cuda
    python tools/bench_video.py --config voc_ssd300 --batch-size 16
    python tools/bench_video.py --checkpoint runs/.../best.pt --video clip.mp4
    python tools/bench_video.py --config voc_ssdlite320 --device cpu --backend onnxruntime

With --config the model has random weights (`model.pretrained` is set to none: nothing is downloaded).
Without --video a synthetic clip is written first (moving coloured rectangles on a noisy background,
mp4v) and timed like any other input. Three figures, each frames/s over the whole clip after a warm-up
batch: `decode` (reading the clip alone), `model` (preprocess + model + postprocess on frames already
in memory) and `end_to_end` (what `detect infer CLIP` does: decode on a background thread,
preprocess, model, postprocess, drawing, encoding, JSONL). Prints one JSON object.
`--backend onnxruntime` runs the model exported to ONNX (as `detect infer --backend onnxruntime`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.device import resolve_device, synchronize  # noqa: E402
from detect.infer import Detector, run_inference  # noqa: E402
from detect.infer.sources import VideoSource, open_capture, read_frames  # noqa: E402


def synthetic_clip(path: Path, frames: int, width: int, height: int, fps: float = 30.0) -> Path:
    """Moving rectangles on a noisy background: decodes and encodes like real footage, roughly."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = rng.integers(0, min(width, height) // 2, (5, 4))
    velocity = rng.integers(-6, 7, (5, 2))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for index in range(frames):
        frame = background.copy()
        for (x, y, w, h), (vx, vy), colour in zip(boxes, velocity, rng.integers(0, 256, (5, 3))):
            left, top = (x + vx * index) % max(1, width - w - 40), (y + vy * index) % max(1, height - h - 40)
            cv2.rectangle(frame, (int(left), int(top)), (int(left + w + 40), int(top + h + 40)), colour.tolist(), -1)
        writer.write(frame)
    writer.release()
    return path


def _config_detector(args) -> Detector:
    from detect.config import load_config
    from detect.models.build import build_model

    config = load_config(args.config, [*args.set, "model.pretrained=none"])
    num_classes = args.num_classes or len(config.data.classes or []) or 20
    class_names = list(config.data.classes or [f"class{i}" for i in range(1, num_classes + 1)])[:num_classes]
    torch.manual_seed(0)
    model = build_model(config.model, config.input, num_classes)
    if args.backend == "onnxruntime":
        return _onnxruntime_detector(model, config, class_names, args)
    return Detector(model, config, class_names, device=args.device, score_threshold=args.score_threshold,
                    batch_size=args.batch_size)


def _onnxruntime_detector(model, config, class_names, args) -> Detector:
    """The model exported with a free batch size, run by onnxruntime (detect/backends/onnxruntime_backend.py)."""
    from detect.export import export_model
    from detect.infer import load_detector

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model(model, config, class_names, path, dynamic_batch=True)
        return load_detector(path, "onnxruntime", "cpu", {"threads": args.threads},
                             score_threshold=args.score_threshold, batch_size=args.batch_size)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="A checkpoint written by detect train.")
    source.add_argument("--config", help="A config name or YAML path (random weights).")
    parser.add_argument("--set", action="append", default=[], help="Config override (with --config), repeatable.")
    parser.add_argument(
        "--num-classes", type=int, default=None, help="With --config: classes (default: data.classes or 20).")
    parser.add_argument("--video", help="A video file (default: a synthetic clip).")
    parser.add_argument("--frames", type=int, default=120, help="Frames of the synthetic clip.")
    parser.add_argument("--size", default="640x480", help="WxH of the synthetic clip.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and onnxruntime) intra-op threads (default: theirs).")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint and args.backend == "onnxruntime":
        from detect.infer import load_detector

        detector = load_detector(args.checkpoint, "onnxruntime", "cpu", {"threads": args.threads},
                                 score_threshold=args.score_threshold, batch_size=args.batch_size)
    elif args.checkpoint:
        detector = Detector.from_checkpoint(args.checkpoint, device=args.device, score_threshold=args.score_threshold,
                                            batch_size=args.batch_size)
    else:
        detector = _config_detector(args)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        if args.video:
            clip = Path(args.video)
        else:
            width, height = (int(v) for v in args.size.lower().split("x"))
            clip = synthetic_clip(Path(scratch) / "clip.mp4", args.frames, width, height)
        video = VideoSource(str(clip), "file", "clip")

        started = time.perf_counter()
        capture = open_capture(video)
        frames = list(read_frames(capture))
        capture.release()
        decode_fps = len(frames) / (time.perf_counter() - started)

        detector.detect_arrays(frames[: args.batch_size])  # warm-up: allocator, cuDNN autotuning, caches
        synchronize(device)
        started = time.perf_counter()
        found = detector.detect_arrays(frames)
        synchronize(device)
        model_fps = len(frames) / (time.perf_counter() - started)

        started = time.perf_counter()
        summary = run_inference(detector, [str(clip)], Path(scratch) / "out", progress=False)
        synchronize(device)
        end_to_end_fps = summary.frames / (time.perf_counter() - started)

    height, width = frames[0].shape[:2]
    result = {
        "model": args.checkpoint or args.config,
        "arch": detector.config.model.arch,
        "backbone": detector.config.model.backbone,
        "input": (f"fixed {detector.config.input.size}" if detector.config.input.resize == "fixed"
                  else f"keep_ratio {detector.config.input.min_size}/{detector.config.input.max_size}"),
        "video": f"{width}x{height}, {len(frames)} frames",
        "batch_size": args.batch_size,
        "backend": args.backend,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "detections_per_frame": round(sum(len(f) for f in found) / len(found), 1),
        "fps": {"decode": round(decode_fps, 1), "model": round(model_fps, 2), "end_to_end": round(end_to_end_fps, 2)},
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
