"""The synthetic clips and their ground truth; MOT scores of a perfect and of an id-swapping tracker."""

from __future__ import annotations

import json

import cv2
import pytest

from detect.data.synthetic_video import generate_video_clips
from detect.track.mot_metrics import read_gt, score_video

pytest.importorskip("motmetrics", reason="motmetrics is in the dev extra (pip install '.[dev]')")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    totals = generate_video_clips(folder, num_clips=1, frames=40, width=320, height=240, seed=3)
    assert totals["frames"] == 40 and totals["boxes"] > 0
    return folder / "clip_0.mp4"


def test_the_clip_and_its_ground_truth_agree_and_repeat_with_the_seed(clip, tmp_path):
    capture = cv2.VideoCapture(str(clip))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240)
    capture.release()
    gt = read_gt(clip.with_suffix(".gt.txt"))
    for objects in gt.values():
        ids = [object_id for object_id, _ in objects]
        assert len(ids) == len(set(ids))
        for _, box in objects:
            assert 0 <= box[0] < box[2] <= 320 and 0 <= box[1] < box[3] <= 240
    again = generate_video_clips(tmp_path, num_clips=1, frames=40, width=320, height=240, seed=3)
    assert again["boxes"] == sum(len(v) for v in gt.values())
    assert (tmp_path / "clip_0.gt.txt").read_text() == clip.with_suffix(".gt.txt").read_text()


def tracker_output(gt, path, swap_after=None):
    """A JSONL as detect infer --track writes it, with the ground truth as detections; after frame
    `swap_after` the two lowest ids trade places."""
    with open(path, "w") as handle:
        for frame in range(max(gt) + 1):
            objects = gt.get(frame, [])
            lowest = sorted({object_id for object_id, _ in objects})[:2]
            detections = []
            for object_id, box in objects:
                track_id = object_id
                if swap_after is not None and frame > swap_after and len(lowest) == 2 and object_id in lowest:
                    track_id = lowest[1] if object_id == lowest[0] else lowest[0]
                detections.append({"box": [float(v) for v in box], "score": 0.9, "label": 1, "track_id": track_id})
            handle.write(json.dumps({"frame": frame, "detections": detections}) + "\n")
    return path


def test_a_perfect_tracker_scores_one_and_swapped_ids_are_counted(clip, tmp_path):
    gt_path = clip.with_suffix(".gt.txt")
    gt = read_gt(gt_path)
    perfect = score_video(gt_path, tracker_output(gt, tmp_path / "perfect.jsonl"))
    assert perfect["mota"] == pytest.approx(1.0) and perfect["idf1"] == pytest.approx(1.0)
    assert perfect["num_switches"] == 0 and perfect["detector_recall"] == pytest.approx(1.0)
    swapped = score_video(gt_path, tracker_output(gt, tmp_path / "swapped.jsonl", swap_after=20))
    assert swapped["num_switches"] == 2 and swapped["idf1"] < 0.9 and swapped["recall"] == pytest.approx(1.0)


def test_a_bad_tracked_line_is_one_line_naming_the_file(tmp_path):
    from detect.errors import DetectError
    from detect.track.mot_metrics import read_tracked

    path = tmp_path / "clip.jsonl"
    path.write_text('{"frame": 0, "detections": []}\nnot json\n')
    with pytest.raises(DetectError, match=r"clip.jsonl: line 2: expected a JSON record"):
        read_tracked(path)
