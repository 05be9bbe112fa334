"""Tracking measured: synthetic clips with a ground truth, the detector with `--track` on each, MOTA,
IDF1 and ID switches (motmetrics), the detector's own recall beside them, and what tracking adds to
the time per frame.

    python tools/bench_tracking.py CKPT [--out runs/bench_tracking] [--clips 3] [--frames 300] \
        [--device cpu] [--score-threshold 0.5] [--track-set key=value ...]

The clips (640 x 480, `detect data synth --video`) are written to OUT/clips unless there. Everything is
the product's: `detect infer --track --gt` scores one clip the same way; the time of the tracker is the
one the run counts (each frame's association), so its share of the time per frame is not lost in the
noise of two separate runs. Prints markdown (HOTA where trackeval is installed); writes OUT/tracking.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from detect.errors import DetectError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_tracking"))
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--track-set", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def measure(args) -> dict:
    """Each clip through `detect infer --track` (the product's run_inference) and scored by the product's
    score_video; the tracker's time is the one the run counts (InferenceSummary.tracker_seconds)."""
    from detect.data.synthetic_video import generate_video_clips
    from detect.infer import load_detector, run_inference
    from detect.infer.tracking import model_threshold, track_config
    from detect.track.mot_metrics import score_video

    clips_dir = args.out / "clips"
    clips = [clips_dir / f"clip_{k}.mp4" for k in range(args.clips)]
    if not all(clip.is_file() for clip in clips):
        generate_video_clips(clips_dir, num_clips=args.clips, frames=args.frames, seed=args.seed)
    track_cfg = track_config(args.track_set)
    detector = load_detector(args.checkpoint, "torch", args.device, batch_size=args.batch_size,
                             score_threshold=model_threshold(args.score_threshold, track_cfg))
    rows = []
    for clip in clips:
        out = args.out / "tracked"
        summary = run_inference(detector, [str(clip)], out, progress=False, tracking=(track_cfg, args.score_threshold))
        scores = score_video(clip.with_suffix(".gt.txt"), out / f"{clip.stem}.jsonl")
        frames = summary.frames
        rows.append({"clip": clip.name, "frames": frames, **scores,
                     "ms_per_frame": 1000 * summary.seconds / frames,
                     "tracker_ms_per_frame": 1000 * summary.tracker_seconds / frames,
                     "tracking_share": summary.tracker_seconds / max(summary.seconds - summary.tracker_seconds, 1e-9)})
    return {"checkpoint": str(args.checkpoint), "device": args.device, "rows": rows}


def format_table(report: dict) -> str:
    lines = ["| clip | frames | objects | detector recall | MOTA | IDF1 | HOTA | ID switches | switches / 100 "
             "object-frames | ms / frame | tracker ms / frame | tracking adds |", "|" + "---|" * 12]
    for row in report["rows"]:
        lines.append(f"| {row['clip']} | {row['frames']} | {int(row['num_unique_objects'])} | "
                     f"{row['detector_recall']:.3f} | {row['mota']:.3f} | {row['idf1']:.3f} | "
                     f"{'-' if row['hota'] is None else format(row['hota'], '.3f')} | "
                     f"{int(row['num_switches'])} | {100 * row['num_switches'] / max(row['num_objects'], 1):.2f} | "
                     f"{row['ms_per_frame']:.1f} | {row['tracker_ms_per_frame']:.2f} | "
                     f"{100 * row['tracking_share']:.1f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = measure(args)
    except DetectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tracking.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
