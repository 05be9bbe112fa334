"""tools/bench_coco_eval.py on a small set: every evaluator runs in its own process, the table names the
CPU, and ours equals pycocotools; benchmarks/coco_eval_set.py is seeded and COCO-like."""

from __future__ import annotations

import json

from benchmarks.coco_eval_set import coco_eval_set
from tests.conftest import load_tool


def test_the_set_is_seeded_and_shaped_like_coco_val():
    dataset, results = coco_eval_set(seed=1, images=200, classes=10, detections_per_image=20)
    again, _ = coco_eval_set(seed=1, images=200, classes=10, detections_per_image=20)
    assert dataset == again and len(results) == 200 * 20
    per_image = len(dataset["annotations"]) / 200
    assert 5 < per_image < 10  # COCO val2017: 7.4
    areas = [entry["area"] for entry in dataset["annotations"]]
    small = sum(area < 32 ** 2 for area in areas) / len(areas)
    large = sum(area > 96 ** 2 for area in areas) / len(areas)
    assert 0.25 < small < 0.55 and 0.15 < large < 0.4
    assert {entry["image_id"] for entry in results} <= {image["id"] for image in dataset["images"]}


def test_a_small_run_prints_the_table_and_equal_numbers(tmp_path, capsys):
    out = tmp_path / "bench.json"
    load_tool("bench_coco_eval").main(["--images", "30", "--classes", "5", "--detections", "10", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "CPU:" in printed and "| pycocotools |" in printed and "numpy equals pycocotools to 1e-12 on all 12 " \
        "stats: True" in printed
    rows = {row["backend"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["numpy"]["stats"] == rows["pycocotools"]["stats"]
    assert rows["numpy"]["seconds"] > 0 and rows["numpy"]["peak_mib"] >= 0
