"""tools/compare_peer.py: the peer's pixel boxes become a results file our evaluator scores against the
original VOC annotations (boxes equal to the ground truth score 100 %)."""

from __future__ import annotations

import json

from detect.config import DataConfig
from detect.data.build import build_dataset, with_class_names
from detect.data.synthetic import generate_synthetic
from tests.conftest import load_tool, run_detect


def test_the_peers_boxes_are_scored_in_the_datas_own_corners(tmp_path, capsys):
    tool = load_tool("compare_peer")
    root = tmp_path / "voc"
    generate_synthetic(root, format="voc", num_images=10, image_size=64)
    # Class ids as the peer's data.yaml has them: the training split's classes (detect data convert).
    val = build_dataset(with_class_names(DataConfig(format="voc", root=str(root))), "val")
    records = [{"file": sample.image_path.name, "xyxy": box.tolist(), "score": 0.9, "class": int(label) - 1}
               for sample in val.samples for box, label in zip(sample.boxes, sample.labels)]
    (tmp_path / "predictions.json").write_text(json.dumps(records))
    detections = tool.peer_detections(tmp_path / "predictions.json", tmp_path / "detections.json")
    code, _, err = run_detect(["eval", "--detections", detections, "--data", root, "--metric", "all", "--json",
                               tmp_path / "eval.json"], capsys)
    assert code == 0, err
    assert tool.scores(tmp_path / "eval.json") == {"voc07": 100.0, "coco_ap": 100.0}
