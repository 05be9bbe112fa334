"""`detect eval --detections`: a results JSON against a small synthetic dataset (VOC and COCO layout)."""

from __future__ import annotations

import json

import pytest

from detect.cli import main
from detect.config import load_config
from detect.data.box_formats import xyxy_to_xywh
from detect.data.build import build_dataset
from detect.data.synthetic import generate_synthetic


def write_config(tmp_path, data_format, root):
    path = tmp_path / f"{data_format}.yaml"
    path.write_text(f"data:\n  format: {data_format}\n  root: {root}\n  val_split: val\n")
    return path


def run(args, capsys):
    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_voc")
    generate_synthetic(root, format="voc", num_images=20, image_size=64, seed=1, val_fraction=0.5)
    return root


def perfect_results(dataset, category):
    """The ground truth as detections, in the annotation files' convention (VOC: 1-based corners)."""
    to_corners = getattr(dataset, "xyxy_to_corners", lambda boxes: boxes)
    results = []
    for index in range(len(dataset)):
        target = dataset[index][1]
        for box, label in zip(xyxy_to_xywh(to_corners(target["boxes"])).tolist(), target["labels"].tolist()):
            results.append({"image_id": target["image_id"], "category_id": category(label), "bbox": box, "score": 0.9})
    return results


def test_voc_perfect_detections_by_name_and_index(tmp_path, voc_root, capsys):
    config = write_config(tmp_path, "voc", voc_root)
    dataset = build_dataset(load_config(str(config), []).data, "val")
    names = dataset.class_names
    results = perfect_results(dataset, lambda label: names[label - 1])
    # Half the entries name the class by its 1-based index instead.
    for entry in results[::2]:
        entry["category_id"] = names.index(entry["category_id"]) + 1
    # A false detection lowers the VOC mAP below 1.
    results.append({"image_id": results[0]["image_id"], "category_id": 1, "bbox": [0, 0, 3, 3], "score": 0.95})
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(results))
    out_json = tmp_path / "out" / "metrics.json"
    code, out, err = run(["eval", "--detections", str(detections), "--config", str(config), "--metric", "all",
                          "--json", str(out_json), "--plots", str(tmp_path / "plots")], capsys)
    assert code == 0, err
    assert "**mAP**" in out
    record = json.loads(out_json.read_text())
    assert record["num_images"] == len(dataset)
    assert 0.5 < record["voc12"]["map"] < 1.0
    assert record["coco"]["AP50"] is not None
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()


def test_unknown_image_and_class_are_one_line_errors(tmp_path, voc_root, capsys):
    config = write_config(tmp_path, "voc", voc_root)
    first_id = build_dataset(load_config(str(config), []).data, "val")[0][1]["image_id"]
    for entry, message in [({"image_id": "nope", "category_id": 1}, "image_id 'nope' is not in this split"),
                           ({"category_id": "zebra"}, "class 'zebra' is not in data.classes")]:
        detections = tmp_path / "dets.json"
        detections.write_text(json.dumps([{"image_id": first_id, "bbox": [0, 0, 5, 5], "score": 0.5, **entry}]))
        code, _, err = run(["eval", "--detections", str(detections), "--config", str(config)], capsys)
        assert code == 2
        assert message in err and str(detections) in err and "Traceback" not in err


def test_coco_layout_uses_category_ids(tmp_path, capsys):
    root = tmp_path / "shapes_coco"
    generate_synthetic(root, format="coco", num_images=12, image_size=64, seed=2, val_fraction=0.5)
    config = write_config(tmp_path, "coco", root)
    annotations = json.loads((root / "annotations" / "instances_val.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in annotations["annotations"]]
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(results))
    out_json = tmp_path / "metrics.json"
    code, _, err = run(["eval", "--detections", str(detections), "--config", str(config), "--metric", "coco",
                        "--json", str(out_json)], capsys)
    assert code == 0, err
    coco = json.loads(out_json.read_text())["coco"]
    assert coco["AP"] == pytest.approx(1.0) and coco["AP50"] == pytest.approx(1.0)


def test_numeric_stems_accept_int_image_ids():
    from detect.evaluation.detections_file import image_lookup

    lookup = image_lookup(["000005", "cat_1"])
    assert lookup[5] == "000005" and lookup["000005"] == "000005" and lookup["cat_1"] == "cat_1"


@pytest.mark.parametrize("entry, message", [
    ({"image_id": [1, 2]}, "entry 0: image_id must be an integer or a string, got [1, 2]"),
    ({"image_id": {"id": 1}}, "entry 0: image_id must be an integer or a string, got {'id': 1}"),
    ({"category_id": [1]}, "entry 0: category_id must be an integer or a string, got [1]"),
    ({"bbox": [10, 10, -5, 8]}, "entry 0: bbox [10, 10, -5, 8] has a negative width or height"),
    ({"bbox": [10, 10, 5, -0.5]}, "entry 0: bbox [10, 10, 5, -0.5] has a negative width or height"),
])
def test_malformed_detection_entries_are_one_line_errors(tmp_path, voc_root, capsys, entry, message):
    config = write_config(tmp_path, "voc", voc_root)
    first_id = build_dataset(load_config(str(config), []).data, "val")[0][1]["image_id"]
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"image_id": first_id, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5,
                                       **entry}]))
    code, _, err = run(["eval", "--detections", str(detections), "--config", str(config)], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"error: {detections}: {message}" + (
        "; [x, y, w, h] with w, h >= 0 expected" if "negative" in message else "")


def test_coco_results_may_name_images_by_file_name():
    from detect.evaluation.detections_file import image_lookup

    lookup = image_lookup([139, 285], {139: "val2017/000000000139.jpg", 285: "000000000285.jpg"})
    assert lookup["val2017/000000000139.jpg"] == lookup["000000000139.jpg"] == lookup[139] == 139
    assert lookup["000000000285.jpg"] == 285
    twins = image_lookup([1, 2], {1: "a/x.jpg", 2: "b/x.jpg"})
    assert "x.jpg" not in twins and twins["a/x.jpg"] == 1  # a last part two images share names neither
