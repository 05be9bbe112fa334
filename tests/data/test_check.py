from pathlib import Path

import pytest

from detect.cli import main
from detect.config import load_config
from detect.data.build import build_dataset
from detect.data.coco import COCODataset
from detect.data.synthetic import SYNTHETIC_CLASSES
from detect.data.voc import VOCDataset
from tests.data.conftest import write_voc


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code


def test_build_synthetic_generates_once_then_loads(tmp_path: Path):
    root = tmp_path / "shapes"
    cfg = load_config(
        "synthetic_faster_rcnn", [f"data.root={root}", "data.synth.num_images=10", "data.synth.image_size=64"])
    train = build_dataset(cfg.data, cfg.data.train_split, training=True)
    assert isinstance(train, VOCDataset) and train.class_names == SYNTHETIC_CLASSES
    assert len(train) == 8 and len(build_dataset(cfg.data, "val")) == 2
    stamp = (root / "JPEGImages" / "000000.jpg").stat().st_mtime_ns
    build_dataset(cfg.data, "train")
    assert (root / "JPEGImages" / "000000.jpg").stat().st_mtime_ns == stamp


def test_build_dispatches_on_format(voc_root: Path, coco_root: Path):
    voc = load_config("voc_faster_rcnn", [f"data.root={voc_root}", "data.classes=[cat,dog]"])
    dataset = build_dataset(voc.data, "train", training=True)
    assert isinstance(dataset, VOCDataset) and dataset[0][1]["labels"].tolist() == [1]  # difficult left out
    assert build_dataset(voc.data, "train")[0][1]["labels"].tolist() == [1, 2]
    coco = load_config("coco_faster_rcnn", [f"data.root={coco_root}"])
    assert isinstance(build_dataset(coco.data, "train"), COCODataset)


def test_data_check_lists_every_problem_and_exits_non_zero(tmp_path: Path, capsys):
    samples = {"a": [("cat", 5, 1, 5, 9)], "b": [("cat", 50, 40, 80, 60)], "c": []}
    root = write_voc(tmp_path, samples, {"train": ["a", "b"], "val": ["c"]})
    (root / "JPEGImages" / "c.jpg").write_bytes(b"")
    code = run_cli(["data", "check", "--config", "voc_faster_rcnn", "--set", f"data.root={root}",
                    "--set", "data.classes=[cat]", "--set", "data.train_split=train", "--set", "data.val_split=val"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"error: {root / 'Annotations' / 'a.xml'}: object 0 (cat): degenerate box" in out
    assert f"warning: {root / 'Annotations' / 'b.xml'}: object 0 box (49, 39, 80, 60)" in out
    assert f"error: {root / 'JPEGImages' / 'c.jpg'}: image file is empty" in out
    assert "split train: 2 images" in out and "split val: 1 images (1 unreadable)" in out


def test_data_check_clean_split_exits_zero(voc_root: Path, capsys):
    code = run_cli(["data", "check", "--config", "voc_faster_rcnn", "--split", "train",
                    "--set", f"data.root={voc_root}", "--set", "data.classes=[cat,dog]"])
    out = capsys.readouterr().out
    assert code == 0
    assert "split train: 3 images (0 unreadable)" in out and "objects: 4 (1 difficult, 0 crowd)" in out
    assert "problems: 0" in out


def test_data_check_and_train_refuse_an_empty_split(tmp_path: Path, capsys):
    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20)]}, {"train": ["a"], "val": []})
    sets = ["--set", f"data.root={root}", "--set", "data.classes=[cat]", "--set", "data.train_split=train",
            "--set", "data.val_split=val", "--set", "data.num_workers=0"]
    assert run_cli(["data", "check", "--config", "voc_faster_rcnn", *sets]) == 1
    out = capsys.readouterr().out
    assert f"error: {root / 'ImageSets' / 'Main' / 'val.txt'}: split 'val' has no images" in out
    empty_train = [*sets, "--set", "data.train_split=val"]
    assert run_cli(["train", "--config", "voc_faster_rcnn", "--device", "cpu", "--out", str(tmp_path / "run"),
                    *empty_train]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {root / 'ImageSets' / 'Main' / 'val.txt'}: split 'val' has no images"


def test_data_check_reports_repeated_coco_ids_and_names(coco_root: Path, capsys):
    import json

    path = coco_root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["categories"].append({"id": 11, "name": "cat"})
    data["images"][2]["id"] = 10
    data["annotations"][3]["id"] = 3
    data["images"].append({"id": 99, "file_name": "../../secret.jpg", "width": 5, "height": 5})
    path.write_text(json.dumps(data))
    code = run_cli(
        ["data", "check", "--config", "coco_faster_rcnn", "--split", "train", "--set", f"data.root={coco_root}"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"error: {path}: categories[3] (id 11): category name 'cat' repeats categories[1]" in out
    assert f"error: {path}: image id 10 is given to 2 images ('10.jpg', '12.jpg')" in out
    assert f"error: {path}: annotation id 3 is used more than once (image id 11)" in out
    assert f"error: {path}: images[3]: image id 99: file_name '../../secret.jpg' points outside the image folder" in out


def test_training_a_model_without_classes_is_refused(coco_root: Path, capsys):
    import json

    path = coco_root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "categories": [], "annotations": []}))
    code = run_cli(["train", "--config", "coco_faster_rcnn", "--device", "cpu", "--set", f"data.root={coco_root}",
                    "--set", "data.train_split=train", "--set", "data.num_workers=0"])
    assert code == 2
    message = f"error: {path}: no categories: a model needs at least one class to detect"
    assert capsys.readouterr().err.strip() == message


def test_classes_null_without_a_training_split_says_where_names_come_from(voc_root: Path):
    from detect.data.build import with_class_names
    from detect.errors import DataError

    cfg = load_config("voc_faster_rcnn", [f"data.root={voc_root}", "data.classes=null", "data.train_split=nope"])
    with pytest.raises(DataError, match=r"nope.txt: VOC split file not found .*data.classes: null takes the class "
                                        r"names from the training split 'nope'; set data.classes"):
        with_class_names(cfg.data)


def test_data_check_reads_a_jpeg_missing_only_its_last_bytes_with_a_warning(tmp_path: Path, capsys):
    """A JPEG without its end-of-image marker but with every block decodes whole: a warning naming the
    file and the missing share; missing a visible part it stays an error, unless the threshold allows it."""
    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20)], "b": [("cat", 5, 5, 20, 20)]}, {"train": ["a", "b"]})
    image = root / "JPEGImages" / "a.jpg"
    data = image.read_bytes()
    image.write_bytes(data[:-2])
    check = ["data", "check", "--config", "voc_faster_rcnn", "--split", "train", "--set", f"data.root={root}",
             "--set", "data.classes=[cat]"]
    assert run_cli(check) == 0
    assert (f"warning: {image}: truncated JPEG (no end-of-image marker) read, 0.00% of the image is missing "
            "(grey)") in capsys.readouterr().out
    image.write_bytes(data[: len(data) // 2])
    assert run_cli(check) == 1
    out = capsys.readouterr().out
    assert f"error: {image}: truncated JPEG (no end-of-image marker), " in out
    assert "of the image is missing (data.max_missing_share is 0.01)" in out
    assert run_cli([*check, "--set", "data.max_missing_share=1.0"]) == 0


def test_data_check_refuses_an_image_over_data_max_pixels_undecoded(tmp_path: Path, capsys):
    """The guard of `detect infer` and the server holds for datasets too (check, train, eval)."""
    from tests.bombs import jpeg_bomb

    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20)], "b": [("cat", 5, 5, 20, 20)]},
                     {"train": ["a", "b"]})
    (root / "JPEGImages" / "b.jpg").write_bytes(jpeg_bomb(30000, 30000))
    args = ["data", "check", "--config", "voc_faster_rcnn", "--split", "train", "--set", f"data.root={root}",
            "--set", "data.classes=[cat]"]
    assert run_cli(args) == 1
    out = capsys.readouterr().out
    assert (f"error: {root / 'JPEGImages' / 'b.jpg'}: JPEG of 30000x30000 pixels is over the limit of 40000000 "
            f"pixels (max_pixels); not decoded") in out
    assert run_cli(args + ["--set", "data.max_pixels=1000"]) == 1
    assert "a.jpg: JPEG of 64x48 pixels is over the limit of 1000 pixels" in capsys.readouterr().out


def _check(root: Path, *extra: str) -> list[str]:
    return ["data", "check", "--config", "voc_faster_rcnn", "--split", "train", "--set", f"data.root={root}",
            "--set", "data.classes=[cat]", *extra]


@pytest.mark.parametrize("opening, closing", [
    ('<annotation xmlns="http://example.org/voc">', "</annotation>"),
    ('<v:annotation xmlns:v="http://example.org/voc">', "</v:annotation>"),
])
def test_data_check_reads_namespaced_voc_xml(tmp_path: Path, capsys, opening, closing):
    """A namespace on the XML used to read as "objects: 0, problems: 0", and training ran on nothing."""
    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20), ("cat", 30, 10, 60, 40)]}, {"train": ["a"]})
    xml = root / "Annotations" / "a.xml"
    text = xml.read_text()
    prefix = "v:" if "xmlns:v" in opening else ""
    body = text.removeprefix("<annotation>").removesuffix("</annotation>")
    if prefix:
        body = body.replace("<", "<v:").replace("<v:/", "</v:")
    xml.write_text(opening + body + closing)
    assert run_cli(_check(root)) == 0
    assert "objects: 2 (0 difficult, 0 crowd)" in capsys.readouterr().out


def test_data_check_refuses_xml_that_is_not_a_voc_annotation(tmp_path: Path, capsys):
    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20)]}, {"train": ["a"]})
    (root / "Annotations" / "a.xml").write_text("<svg><object><name>cat</name></object></svg>")
    assert run_cli(_check(root)) == 1
    out = capsys.readouterr().out
    assert f"{root / 'Annotations' / 'a.xml'}: not a VOC annotation: the root element is <svg>" in out


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_data_check_reads_split_files_with_a_byte_order_mark(tmp_path: Path, capsys, encoding):
    root = write_voc(tmp_path, {"a": [("cat", 5, 5, 20, 20)], "b": []}, {"train": ["a", "b"]})
    (root / "ImageSets" / "Main" / "train.txt").write_bytes("a\r\nb\r\n".encode(encoding))
    assert run_cli(_check(root)) == 0
    assert "split train: 2 images (0 unreadable)" in capsys.readouterr().out


def test_a_split_file_that_is_not_text_is_one_line(tmp_path: Path, capsys):
    root = write_voc(tmp_path, {"a": []}, {"train": ["a"]})
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_bytes(b"a\n\xff\xfe\xfd\n")
    assert run_cli(_check(root)) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {split}: the VOC split file is not UTF-8 text (byte 2, line 2); save it as UTF-8"


@pytest.mark.parametrize("field, value, message", [
    ("area", "120", "area must be a number of at least 0, got '120'"),
    ("area", None, "area must be a number of at least 0, got None"),
    ("iscrowd", "no", "iscrowd must be 0 or 1, got 'no'"),
])
def test_data_check_refuses_coco_fields_that_scoring_cannot_read(coco_root: Path, capsys, field, value, message):
    import json

    annotation_file = coco_root / "annotations" / "instances_train.json"
    data = json.loads(annotation_file.read_text())
    data["annotations"][0][field] = value
    annotation_file.write_text(json.dumps(data))
    code = run_cli(
        ["data", "check", "--config", "coco_faster_rcnn", "--split", "train", "--set", f"data.root={coco_root}"])
    assert code == 1
    assert message in capsys.readouterr().out


def test_deeply_nested_json_is_one_line_in_data_check_and_eval(coco_root: Path, tmp_path: Path, capsys):
    detections = tmp_path / "dets.json"
    detections.write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    code = run_cli(["eval", "--detections", str(detections), "--config", "coco_faster_rcnn", "--split", "train",
                    "--set", f"data.root={coco_root}", "--set", "data.train_split=train"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().startswith(f"error: {detections}: JSON nested too deeply to read")
    annotation_file = coco_root / "annotations" / "instances_train.json"
    annotation_file.write_text("[" * 200_000 + "]" * 200_000)
    code = run_cli(
        ["data", "check", "--config", "coco_faster_rcnn", "--split", "train", "--set", f"data.root={coco_root}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"error: {annotation_file}: JSON nested too deeply to read (arrays or objects inside each "
                           f"other thousands of levels deep); not a COCO annotation file")
