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


def track_lines(path, frames: dict[int, list[tuple[int, list[float]]]]):
    """A JSONL of detect infer --track: frame -> [(track id, box)]."""
    with open(path, "w") as handle:
        for frame in range(max(frames) + 1):
            detections = [{"box": box, "score": 0.9, "label": 1, "track_id": track_id}
                          for track_id, box in frames.get(frame, [])]
            handle.write(json.dumps({"frame": frame, "detections": detections}) + "\n")
    return path


def test_hota_of_a_track_split_in_two_is_the_square_root_of_a_half(tmp_path):
    """One object on 4 frames, boxes exact, tracked as id 1 then id 2: every detection is right (DetA 1),
    and each of its matches shares its id with 2 of the object's 4 frames (AssA 2 / 4): HOTA = sqrt(0.5)
    (HOTA's definition, Luiten et al. 2021, worked by hand)."""
    pytest.importorskip("trackeval", reason="trackeval: pip install --no-deps trackeval (tools/setup_env.sh does)")
    box = [10.0, 10.0, 40.0, 30.0]
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{frame},7,10,10,30,20,1,1,1\n" for frame in range(1, 5)))
    split = score_video(gt, track_lines(tmp_path / "split.jsonl", {0: [(1, box)], 1: [(1, box)], 2: [(2, box)],
                                                                    3: [(2, box)]}))
    assert split["deta"] == pytest.approx(1.0) and split["assa"] == pytest.approx(0.5)
    assert split["hota"] == pytest.approx(0.5 ** 0.5)
    whole = score_video(gt, track_lines(tmp_path / "whole.jsonl", {frame: [(1, box)] for frame in range(4)}))
    assert whole["hota"] == pytest.approx(1.0)


def test_motmetrics_and_trackeval_agree_on_mota_and_idf1(clip, tmp_path):
    """The cross-check: trackeval's own CLEAR and Identity metrics on the same data as score_video's."""
    pytest.importorskip("trackeval", reason="trackeval: pip install --no-deps trackeval (tools/setup_env.sh does)")
    import numpy as np
    from trackeval.metrics import CLEAR, Identity

    from detect.iou import iou_matrix
    from detect.track.mot_metrics import read_tracked

    gt_path = clip.with_suffix(".gt.txt")
    gt = read_gt(gt_path)
    tracked_path = tracker_output(gt, tmp_path / "swapped.jsonl", swap_after=20)
    ours = score_video(gt_path, tracked_path)
    tracked = read_tracked(tracked_path)
    frames = range(max(gt) + 1)
    ids = sorted({i for objects in gt.values() for i, _ in objects})
    data = {"num_timesteps": len(frames), "num_gt_ids": len(ids), "num_tracker_ids": len(ids),
            "num_gt_dets": sum(len(gt.get(f, [])) for f in frames),
            "num_tracker_dets": sum(len(tracked.get(f, [])) for f in frames),
            "gt_ids": [np.array([ids.index(i) for i, _ in gt.get(f, [])], int) for f in frames],
            "tracker_ids": [np.array([ids.index(d["track_id"]) for d in tracked.get(f, [])], int) for f in frames],
            "similarity_scores": [iou_matrix(np.array([b for _, b in gt.get(f, [])], float).reshape(-1, 4),
                                             np.array([d["box"] for d in tracked.get(f, [])], float).reshape(-1, 4))
                                  for f in frames]}
    assert CLEAR().eval_sequence(data)["MOTA"] == pytest.approx(ours["mota"], abs=1e-9)
    assert CLEAR().eval_sequence(data)["IDSW"] == ours["num_switches"]
    assert Identity().eval_sequence(data)["IDF1"] == pytest.approx(ours["idf1"], abs=1e-9)
    assert 0.0 < ours["hota"] < 1.0
