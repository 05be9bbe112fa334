"""The tracker on scripted detections: occlusion within the buffer, crossings of one class, low-score
detections keeping a track, ids never reused, and the Kalman filter following constant motion."""

from __future__ import annotations

import numpy as np
import pytest

from detect.config import TrackConfig
from detect.track import kalman
from detect.track.bytetrack import ByteTracker


def box_at(x, y, size=40):
    return [x, y, x + size, y + size]


def run(frames, **settings):
    """frames: [[(box, score, label), ...], ...] -> per frame {detection index: track id}."""
    tracker = ByteTracker(TrackConfig(**settings))
    out = []
    for detections in frames:
        boxes = np.array([d[0] for d in detections], np.float32).reshape(-1, 4)
        tracked = tracker.update(boxes, [d[1] for d in detections], [d[2] for d in detections])
        out.append(dict(zip(tracked.detection_index.tolist(), tracked.track_ids.tolist())))
    return out, tracker


def test_a_track_survives_a_ten_frame_occlusion_within_the_buffer():
    frames = [[(box_at(10 + 5 * t, 100), 0.9, 1)] if not 20 <= t < 30 else [] for t in range(50)]
    ids, tracker = run(frames, lost_buffer=15)
    assert {i for frame in ids for i in frame.values()} == {1}
    assert ids[30] == {0: 1}  # taken up again after 10 frames unseen, where the motion put it
    ids, _ = run(frames, lost_buffer=5)
    assert ids[30] == {} and ids[31] == {0: 2}  # beyond the buffer: a new id (confirmed at its 2nd frame)


def test_two_crossing_objects_of_one_class_keep_their_ids():
    # One moves right, the other left, on nearly the same row, passing through each other around frame 20.
    frames = [[(box_at(10 + 6 * t, 100), 0.9, 1), (box_at(250 - 6 * t, 104), 0.8, 1)] for t in range(40)]
    ids, _ = run(frames, duplicate_iou=1.0)  # both detections kept while they overlap
    assert all(frame == {0: 1, 1: 2} for frame in ids)
    # By default the weaker of two boxes overlapping at IoU >= 0.35 is a duplicate: while they overlap that
    # much only one is tracked, and both come out of the crossing with the ids they went in with.
    ids, tracker = run(frames)
    overlapping = [t for t in range(40) if len(ids[t]) == 1]
    assert overlapping and min(overlapping) > 10 and max(overlapping) < 30
    assert ids[39] == {0: 1, 1: 2} and [t.track_id for t in tracker.all_tracks()] == [1, 2]


def test_a_track_unseen_keeps_its_size_and_is_taken_up_again():
    # An object shrinking about a fixed centre (as one going behind another can seem to), its height down 3 px
    # a frame to 33 px, then hidden for 12 frames and seen again as it was last: its track kept the last
    # size while unseen (not 3 px less each frame, nothing left after 11), so it takes the object up again.
    shrinking = [[([100 + 1.5 * t, 100 + 1.5 * t, 160 - 1.5 * t, 160 - 1.5 * t], 0.9, 1)] for t in range(10)]
    last_seen = shrinking[-1][0][0]
    ids, tracker = run(shrinking + [[]] * 12 + [[(last_seen, 0.9, 1)]] * 3)
    assert ids[22] == {0: 1} and [t.track_id for t in tracker.all_tracks()] == [1]
    ids, tracker = run(shrinking + [[]] * 12)
    predicted = tracker.tracks[0].box
    assert predicted[3] - predicted[1] == pytest.approx(33, abs=3)


def test_a_low_score_detection_keeps_a_track_and_ids_are_never_reused():
    frames = [[(box_at(10 + 4 * t, 50), 0.9 if t < 5 or t > 9 else 0.3, 2)] for t in range(15)]
    ids, _ = run(frames)
    assert all(frame == {0: 1} for frame in ids)  # the unsure frames 5..9 kept the same track
    again = [[(box_at(10, 50), 0.9, 1)]] * 3 + [[]] * 5 + [[(box_at(300, 300), 0.9, 1)]] * 3
    ids, tracker = run(again, lost_buffer=2)
    assert ids[0] == {0: 1} and ids[9] == {0: 2}
    assert [t.track_id for t in tracker.all_tracks()] == [1, 2]


def test_a_track_outlives_a_wavering_class_unless_matching_is_per_class():
    frames = [[(box_at(10 + 2 * t, 10), 0.9, 1 if t < 5 or t > 6 else 2)] for t in range(10)]
    ids, tracker = run(frames)
    assert all(frame == {0: 1} for frame in ids) and tracker.all_tracks()[0].label == 1  # mostly class 1
    ids, _ = run(frames, per_class=True)
    assert ids[4] == {0: 1} and ids[5] == {} and ids[6] == {0: 2}


def test_the_kalman_filter_learns_a_constant_velocity():
    mean, covariance = kalman.initiate(kalman.xyxy_to_measurement(box_at(0, 0)))
    for t in range(1, 20):
        mean, covariance = kalman.predict(mean, covariance)
        mean, covariance = kalman.update(mean, covariance, kalman.xyxy_to_measurement(box_at(3 * t, 2 * t)))
    predicted, _ = kalman.predict(mean, covariance)
    np.testing.assert_allclose(kalman.measurement_to_xyxy(predicted), box_at(60, 40), atol=0.5)
    assert kalman.measurement_to_xyxy(kalman.xyxy_to_measurement([1, 2, 11, 32])) == pytest.approx([1, 2, 11, 32])


def test_appearance_keeps_apart_two_objects_whose_boxes_trade_places():
    """Two objects swap positions while hidden for a few frames: by boxes alone the tracks follow the
    positions (the ids swap); with their colours, each id stays with its object."""
    from detect.track.appearance import colour_histograms, distance

    red, blue = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    features = {"red": colour_histograms(red, np.array([[0, 0, 40, 40]]))[0],
                "blue": colour_histograms(blue, np.array([[0, 0, 40, 40]]))[0]}
    assert distance(features["red"][None], features["blue"][None])[0, 0] == pytest.approx(1.0)
    assert distance(features["red"][None], features["red"][None])[0, 0] == pytest.approx(0.0)

    def frame(t):
        left, right = box_at(100, 100), box_at(104, 100)  # standing almost on one spot, side by side
        if t < 5:
            return [(left, "red"), (right, "blue")]
        return [] if t < 8 else [(left, "blue"), (right, "red")]  # hidden, then back the other way round

    for weight, same in ((0.0, False), (0.5, True)):
        tracker = ByteTracker(TrackConfig(appearance_weight=weight, duplicate_iou=1.0))
        colour_of = {}
        for t in range(12):
            found = frame(t)
            boxes = np.array([b for b, _ in found], np.float32).reshape(-1, 4)
            tracked = tracker.update(boxes, [0.9] * len(found), [1] * len(found),
                                     np.stack([features[c] for _, c in found]) if found else np.zeros((0, 64)))
            for index, track_id in zip(tracked.detection_index, tracked.track_ids):
                colour_of.setdefault(int(track_id), set()).add(found[index][1])
        assert all(len(colours) == 1 for colours in colour_of.values()) == same, (weight, colour_of)


def test_a_track_learns_its_look_only_where_no_other_box_overlaps_it():
    # A track alone, then for 5 frames overlapped by a second detection whose middle shows another colour: its
    # histogram stays as it was alone; set to learn from every match, it takes the mixed colours in.
    alone, mixed, other = np.eye(64, dtype=np.float32)[:3]

    def final_feature(overlap_iou):
        tracker = ByteTracker(TrackConfig(appearance_overlap_iou=overlap_iou, duplicate_iou=1.0))
        for t in range(10):
            boxes, features = [box_at(100 + 2 * t, 100)], [alone if t < 5 else mixed]
            if t >= 5:
                boxes.append(box_at(110 + 2 * t, 100))  # IoU about 0.6 with the first
                features.append(other)
            tracker.update(np.array(boxes, np.float32), [0.9] * len(boxes), [1] * len(boxes), np.stack(features))
        return next(t for t in tracker.tracks if t.track_id == 1).feature

    np.testing.assert_allclose(final_feature(0.1), alone)
    learned = final_feature(1.0)
    assert learned[1] == pytest.approx(1 - 0.9 ** 5, abs=1e-6) and learned[0] == pytest.approx(0.9 ** 5, abs=1e-6)
