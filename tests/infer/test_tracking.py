"""`detect infer --track` on a video: track ids in the JSONL, a tracks.csv, unsure detections kept only
within tracks; the CLI's tracker settings. The detector is scripted (two squares moving and crossing,
one weak detection) so that the expected ids are known."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from detect.config import TrackConfig
from detect.infer.detector import Detections
from detect.infer.run import run_inference
from tests.infer.test_sources import write_video

NAMES = ["circle", "square"]


class ScriptedDetector:
    """Frame t: a square moving right and one moving left on one row (they cross at t = 10), and at frame
    5 the first one is found only weakly (score 0.3); plus, from frame 3, a circle scored 0.15 that never
    reaches a track."""

    batch_size = 4
    class_names = NAMES

    def __init__(self):
        self.frame = 0

    def prepare(self, frame):
        return frame

    def detect_arrays(self, frames, samples=None):
        results = []
        for _ in frames:
            t = self.frame
            boxes = [[20 + 8 * t, 50, 60 + 8 * t, 90], [180 - 8 * t, 70, 220 - 8 * t, 110]]  # IoU up to 1/3
            scores, labels = [0.3 if t == 5 else 0.9, 0.9], [2, 2]
            if t >= 3:
                boxes.append([5, 5, 25, 25])
                scores.append(0.15)
                labels.append(1)
            order = np.argsort(scores)[::-1]
            results.append(Detections(np.array(boxes, np.float32)[order], np.array(scores, np.float32)[order],
                                      np.array(labels, np.int64)[order], [NAMES[labels[i] - 1] for i in order],
                                      (120, 240)))
            self.frame += 1
        return results


def test_a_tracked_video_writes_ids_and_tracks_csv(tmp_path):
    clip = write_video(tmp_path / "clip.avi", frames=20, fps=10.0, size=(240, 120))
    out = tmp_path / "out"
    summary = run_inference(ScriptedDetector(), [str(clip)], out, progress=False, tracking=(TrackConfig(), 0.5))
    assert summary.frames == 20 and out / "clip.tracks.csv" in summary.outputs
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    first = {d["box"][0]: d["track_id"] for d in lines[0]["detections"]}
    right, left = first[20.0], first[180.0]
    assert {right, left} == {1, 2}
    for line in lines:
        squares = sorted(((d["box"][0], d["track_id"]) for d in line["detections"] if d["class_name"] == "square"))
        t = line["frame"]
        expected = sorted([(20 + 8 * t, right), (180 - 8 * t, left)])
        assert squares == [(float(x), i) for x, i in expected], t  # the weak frame 5 and the crossing kept
        assert all(d["class_name"] != "circle" for d in line["detections"])  # 0.15: in no track, below 0.5
    with open(out / "clip.tracks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["track_id"], r["class_name"], r["first_frame"], r["last_frame"], r["frames_seen"]) for r in rows] == [
        ("1", "square", "0", "19", "20"), ("2", "square", "0", "19", "20")]


def test_track_settings_from_the_command_line(tmp_path):
    from detect.errors import DetectError
    from detect.infer.tracking import model_threshold, track_config

    assert track_config(["lost_buffer=5", "track.high_score=0.6"]) == TrackConfig(lost_buffer=5, high_score=0.6)
    with pytest.raises(DetectError, match="track.low_score"):
        track_config(["low_score=0.9"])
    assert model_threshold(0.5, TrackConfig(low_score=0.1)) == 0.1 and model_threshold(0.05, TrackConfig()) == 0.05
    from detect.infer.tracking import VideoTracking

    with pytest.raises(DetectError, match="track.tracker sort: unknown tracker; choose from bytetrack"):
        VideoTracking(track_config(["tracker=sort"]), 0.5, NAMES)


def test_the_tracker_time_is_counted_apart(tmp_path):
    clip = write_video(tmp_path / "clip.avi", frames=8, fps=10.0, size=(240, 120))
    summary = run_inference(ScriptedDetector(), [str(clip)], tmp_path / "out", progress=False,
                            tracking=(TrackConfig(), 0.5))
    assert 0.0 < summary.tracker_seconds < summary.seconds
    untracked = run_inference(ScriptedDetector(), [str(clip)], tmp_path / "plain", progress=False)
    assert untracked.tracker_seconds == 0.0


def test_infer_scores_a_tracked_video_against_its_ground_truth(checkpoints, tmp_path, capsys):
    pytest.importorskip("motmetrics", reason="motmetrics is in the dev extra (pip install '.[dev]')")
    from detect.data.synthetic_video import generate_video_clips
    from tests.conftest import run_detect

    generate_video_clips(tmp_path / "clips", num_clips=1, frames=8, width=96, height=64, seed=1)
    clip, gt = tmp_path / "clips" / "clip_0.mp4", tmp_path / "clips" / "clip_0.gt.txt"
    code, out, err = run_detect(["infer", checkpoints["ssd"], clip, "--track", "--gt", gt, "--out",
                                 tmp_path / "out", "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    assert "tracking: MOTA " in out and "IDF1 " in out and "HOTA" in out and "ID switches" in out
    assert "time per frame: " in out and "of which tracking" in out
    second = tmp_path / "second.mp4"
    second.write_bytes(clip.read_bytes())
    for args, message in [
        (["--gt", gt], "--gt scores the tracks of a video; add --track"),
        (["--track", "--gt", tmp_path / "absent.txt"], "no such file"),
        (["--track", "--gt", gt, second], "--gt is the ground truth of one video; the sources hold 2"),
    ]:
        code, _, err = run_detect(["infer", checkpoints["ssd"], clip, "--out", tmp_path / "o2", *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_infer_track_writes_the_tracks_table(checkpoints, tmp_path, capsys):
    from tests.infer.test_infer import run_cli

    clip = write_video(tmp_path / "clip.mp4", frames=6, size=(64, 48))
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(checkpoints["ssd"]), str(clip), "--out", str(out), "--track",
                                 "--track-set", "lost_buffer=3", "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4", "clip.tracks.csv"]
    records = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert all("track_id" in d for r in records for d in r["detections"])
    assert (out / "clip.tracks.csv").read_text().startswith("track_id,class_name,first_frame,last_frame,frames_seen")


def test_track_options_that_would_be_ignored_are_one_line(checkpoints, tmp_path, capsys):
    from tests.conftest import run_detect
    from tests.data.conftest import write_image

    image = write_image(tmp_path / "photos" / "a.jpg", 48, 64)
    clip = write_video(tmp_path / "clip.mp4", frames=2, size=(64, 48))
    out = tmp_path / "out"
    code, _, err = run_detect(["infer", checkpoints["ssd"], image.parent, "--out", out, "--track"], capsys)
    assert code == 2 and "--track follows objects across the frames of a video, and the sources hold only images" in err
    code, _, err = run_detect(["infer", checkpoints["ssd"], clip, "--out", out, "--track-set", "nonsense=1"], capsys)
    assert code == 2 and "--track-set sets the tracker, which runs with --track only; add --track" in err
    assert not out.exists()


def test_the_tracking_benchmark_runs_end_to_end(checkpoints, tmp_path, capsys):
    pytest.importorskip("motmetrics", reason="motmetrics is in the dev extra (pip install '.[dev]')")
    from tests.conftest import load_tool

    code = load_tool("bench_tracking").main([str(checkpoints["ssd"]), "--out", str(tmp_path), "--clips", "1",
                                             "--frames", "12", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "tracking.json").read_text())
    row = report["rows"][0]
    assert row["frames"] == 12 and 0.0 <= row["detector_recall"] <= 1.0 and row["tracker_ms_per_frame"] > 0
    assert "| clip_0.mp4 | 12 |" in capsys.readouterr().out
