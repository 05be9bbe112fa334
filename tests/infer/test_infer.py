"""The Detector API and `detect infer`: every input kind, batching, filters, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detect import Detector
from detect.cli import main
from detect.errors import CheckpointError, DetectError
from detect.infer import Detections, run_inference
from tests.infer.conftest import CLASS_NAMES, dark_image, noise_image, rigged
from tests.infer.test_sources import write_video


@pytest.fixture(scope="module")
def detectors(tiny_models):
    """arch -> Detector on the rigged tiny model (nothing in dark images), threshold 0: keep all."""
    return {
        arch: Detector(rigged(model), config, CLASS_NAMES, device="cpu", score_threshold=0.0, batch_size=4)
        for arch, (model, config) in tiny_models.items()
    }


def run_cli(args, capsys):
    """Run `detect ...` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("arch", ["ssd", "faster_rcnn"])
def test_every_input_kind_gives_the_same_detections(detectors, tmp_path, arch):
    detector = detectors[arch]
    array = noise_image(70, 110, seed=1)
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    from_array = detector(array)
    assert isinstance(from_array, Detections) and len(from_array) > 0
    for other in (detector(str(path)), detector(path), detector(Image.fromarray(array))):
        np.testing.assert_allclose(other.boxes, from_array.boxes, atol=1e-4)
        np.testing.assert_array_equal(other.labels, from_array.labels)
    assert detector(str(path)).source == str(path)
    # Boxes are in the original image's pixels, named after their labels.
    boxes = from_array.boxes
    assert boxes.dtype == np.float32 and boxes.shape == (len(from_array), 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 110 + 1e-3).all() and (boxes[:, 3] <= 70 + 1e-3).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert np.all(np.diff(from_array.scores) <= 0)
    assert from_array.class_names == [CLASS_NAMES[label - 1] for label in from_array.labels]
    assert from_array.image_size == (70, 110)


@pytest.mark.parametrize("arch", ["ssd", "faster_rcnn"])
def test_a_list_is_batched_and_a_dark_image_has_no_detections(detectors, arch):
    detector = detectors[arch]
    # Same-size images: batching adds no padding, so batched equals one by one.
    images = [noise_image(64, 96, seed=s) for s in range(3)] + [dark_image(64, 96)]
    batched = detector(images, batch_size=4)
    single = [detector(image) for image in images]
    assert len(batched) == 4 and len(batched[3]) == 0 and all(len(found) > 0 for found in batched[:3])
    for one, many in zip(single, batched):
        np.testing.assert_allclose(one.boxes, many.boxes, atol=1e-3)
        np.testing.assert_allclose(one.scores, many.scores, atol=1e-5)
    assert batched[3].boxes.shape == (0, 4) and batched[3].to_list() == [] and batched[3].to_coco(3) == []


def test_score_threshold_and_class_filter(detectors):
    detector = detectors["ssd"]
    image = noise_image(64, 64, seed=5)
    everything = detector(image)
    threshold = float(np.median(everything.scores))
    high = detector(image, score_threshold=threshold)
    assert 0 < len(high) < len(everything) and (high.scores >= threshold).all()
    label = int(everything.labels[0])
    only = detector(image, classes=[CLASS_NAMES[label - 1]])
    assert len(only) == int((everything.labels == label).sum()) and set(only.labels) == {label}
    assert len(detector(image, classes=f"{CLASS_NAMES[0]},{CLASS_NAMES[1]}").labels) > 0
    with pytest.raises(DetectError, match="unknown class.*hexagon.*circle, square, triangle"):
        detector(image, classes=["hexagon"])


def test_bad_inputs(detectors, tmp_path):
    detector = detectors["ssd"]
    with pytest.raises(DetectError, match="give a path, a numpy RGB array or a PIL image"):
        detector(42)
    with pytest.raises(DetectError, match="must be uint8"):
        detector(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(DetectError, match="missing.png: image file not found"):
        detector(tmp_path / "missing.png")
    assert len(detector(np.full((30, 40), 200, np.uint8)).image_size) == 2  # grey images become RGB


def test_to_coco_is_xywh_of_the_xyxy_boxes(detectors):
    found = detectors["faster_rcnn"](noise_image(50, 60, seed=2))
    coco = found.to_coco(image_id=7)
    assert len(coco) == len(found)
    for entry, box, score in zip(coco, found.boxes, found.scores):
        x, y, w, h = entry["bbox"]
        assert entry["image_id"] == 7 and entry["category_id"] in (1, 2, 3)
        np.testing.assert_allclose([x, y, x + w, y + h], box, atol=0.02)
        assert entry["score"] == pytest.approx(float(score), abs=1e-5)


def test_from_checkpoint_matches_the_model(checkpoints, tiny_models):
    model, config = tiny_models["faster_rcnn"]
    loaded = Detector.from_checkpoint(checkpoints["faster_rcnn"], device="cpu", score_threshold=0.0)
    direct = Detector(model, config, CLASS_NAMES, device="cpu", score_threshold=0.0)
    image = noise_image(80, 60, seed=3)
    np.testing.assert_allclose(loaded(image).boxes, direct(image).boxes, atol=1e-5)
    assert loaded.class_names == CLASS_NAMES and loaded.config.input.min_size == 64


def test_coco_checkpoint_writes_its_category_ids(checkpoints, tmp_path):
    """A checkpoint trained on COCO data stores each label's category id; COCO results use them."""
    state = torch.load(checkpoints["ssd"], weights_only=True)
    coco_ids = [3, 17, 90]
    torch.save({**state, "category_ids": coco_ids}, tmp_path / "coco.pt")
    detector = Detector.from_checkpoint(tmp_path / "coco.pt", device="cpu", score_threshold=0.0)
    assert detector.category_ids == coco_ids
    cv2.imwrite(str(tmp_path / "noise.png"), noise_image(64, 64, seed=5))
    run_inference(detector, [str(tmp_path / "noise.png")], tmp_path / "out", write_json=True, progress=False)
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert report["categories"] == [{"id": i, "label": label, "name": name}
                                    for label, (i, name) in enumerate(zip(coco_ids, CLASS_NAMES), start=1)]
    detections = report["images"][0]["detections"]
    coco = json.loads((tmp_path / "out" / "detections_coco.json").read_text())
    assert len(coco) == len(detections) > 0
    assert [entry["category_id"] for entry in coco] == [coco_ids[d["label"] - 1] for d in detections]

    torch.save({**state, "category_ids": [1, 2]}, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="mismatch.pt: 2 category ids for 3 classes"):
        Detector.from_checkpoint(tmp_path / "mismatch.pt", device="cpu")
    torch.save({**state, "category_ids": "3,17,90"}, tmp_path / "malformed.pt")
    with pytest.raises(CheckpointError, match="malformed.pt: category_ids must be a list of integers"):
        Detector.from_checkpoint(tmp_path / "malformed.pt", device="cpu")


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        Detector.from_checkpoint(tmp_path / "none.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable checkpoint"):
        Detector.from_checkpoint(garbage)
    partial = tmp_path / "partial.pt"
    torch.save({"model": {}}, partial)
    with pytest.raises(CheckpointError, match="partial.pt: not a detect checkpoint \\(missing config, class_names\\)"):
        Detector.from_checkpoint(partial)


def test_run_inference_writes_images_json_and_skips_corrupt_files(detectors, tmp_path, caplog):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    cv2.imwrite(str(source / "noise.jpg"), noise_image(60, 80, seed=4))
    cv2.imwrite(str(source / "sub" / "dark.png"), dark_image(50, 40))
    (source / "corrupt.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    summary = run_inference(detectors["faster_rcnn"], [str(source)], out, write_json=True, progress=False)

    assert summary.images == 2 and summary.skipped == [str(source / "corrupt.png")]
    assert "corrupt.png: cannot decode" in caplog.text
    assert cv2.imread(str(out / "noise.jpg")).shape == (60, 80, 3)
    assert cv2.imread(str(out / "sub" / "dark.png")).shape == (50, 40, 3)
    # The dark image's copy is untouched (nothing drawn); the noisy one has boxes drawn on it.
    np.testing.assert_array_equal(cv2.imread(str(out / "sub" / "dark.png")), dark_image(50, 40))

    report = json.loads((out / "detections.json").read_text())
    assert report["categories"] == [{"id": i + 1, "label": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
    by_file = {record["file"]: record for record in report["images"]}
    noisy, dark = by_file[str(source / "noise.jpg")], by_file[str(source / "sub" / "dark.png")]
    assert (noisy["height"], noisy["width"]) == (60, 80) and dark["detections"] == []
    assert len(noisy["detections"]) > 0
    for detection in noisy["detections"]:
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 60
        assert detection["class_name"] == CLASS_NAMES[detection["label"] - 1] and 0 <= detection["score"] <= 1
    coco = json.loads((out / "detections_coco.json").read_text())
    # A checkpoint trained on VOC-layout data names images by file stem, as VOC ground truth does.
    assert len(coco) == len(noisy["detections"]) and {entry["image_id"] for entry in coco} == {"noise"}


def test_run_inference_on_a_video_writes_video_and_jsonl(detectors, tmp_path):
    clip = write_video(tmp_path / "clip.avi", frames=7, fps=15.0, size=(64, 48))
    out = tmp_path / "out"
    summary = run_inference(detectors["ssd"], [str(clip)], out, progress=False)
    assert summary.videos == 1 and summary.frames == 7
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert size == (64, 48) and frames == 7
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(7))
    assert lines[1]["time"] == pytest.approx(1 / 15, abs=1e-3)
    # Frame 0 is black (write_video's first frame): the rigged model finds nothing in it.
    assert lines[0]["detections"] == [] and all(line["detections"] for line in lines[1:])
    # --max-frames stops early.
    assert run_inference(detectors["ssd"], [str(clip)], tmp_path / "short", max_frames=3, progress=False).frames == 3


def test_cli_infer_images_glob_and_video(checkpoints, tmp_path, capsys):
    for index in range(2):
        cv2.imwrite(str(tmp_path / f"img{index}.png"), noise_image(40, 50, seed=index))
    clip = write_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["infer", str(checkpoints["ssd"]), str(tmp_path / "img*.png"), str(clip), "--out", str(out), "--json",
         "--score-threshold", "0.3", "--classes", "circle,square", "--batch-size", "3", "--device", "cpu", "-q"],
        capsys,
    )
    assert code == 0 and "2 images, 1 videos (4 frames)" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.jsonl", "clip.mp4", "detections.json", "detections_coco.json", "img0.png", "img1.png"]
    detections = [
        d for image in json.loads((out / "detections.json").read_text())["images"] for d in image["detections"]]
    assert detections and {d["class_name"] for d in detections} <= {"circle", "square"}
    assert min(d["score"] for d in detections) >= 0.3


def test_cli_infer_errors_are_one_line(checkpoints, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    cases = [
        ([str(checkpoints["ssd"]), str(tmp_path / "missing.jpg")], "missing.jpg: no such file or folder"),
        ([str(tmp_path / "none.pt"), str(broken)], "none.pt: checkpoint not found"),
        (
            [str(checkpoints["ssd"]), str(broken), "--out", str(tmp_path / "o")], "broken.mp4: cannot open the video "
                                                                                  "file"),
        ([str(checkpoints["ssd"]), str(broken), "--classes", "hexagon"], "unknown class(es) hexagon"),
        ([str(checkpoints["ssd"]), "rtsp://127.0.0.1:1/none"], "rtsp://127.0.0.1:1/none: cannot open the stream"),
    ]
    for args, message in cases:
        code, _, stderr = run_cli(["infer", *args, "-q"], capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr


def test_outputs_never_overwrite_inputs_and_names_stay_unique(detectors, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "same.png"), noise_image(20, 20, seed=0))
    with pytest.raises(DetectError, match="would overwrite the input .*same.png; choose another folder"):
        run_inference(detectors["ssd"], [str(tmp_path / "a")], tmp_path / "a", progress=False)
    out = tmp_path / "out"
    run_inference(detectors["ssd"], [str(tmp_path / "a" / "same.png"), str(tmp_path / "b" / "same.png")], out,
                  progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["same.png", "same_1.png"]


def test_drawing_uses_the_class_colour_and_leaves_the_input_alone():
    from detect.draw import class_colour
    from detect.infer import draw_detections

    image = np.full((60, 80, 3), 128, np.uint8)
    found = Detections(np.array([[10, 20, 50, 55]], np.float32), np.array([0.9], np.float32),
                       np.array([2]), ["square"], (60, 80))
    drawn = draw_detections(image, found, CLASS_NAMES)
    assert drawn.shape == image.shape and (image == 128).all()
    assert tuple(drawn[40, 10]) == class_colour(2)  # the box's left edge, in its class's colour
    assert (drawn[5:20, 10:40] != 128).any(axis=2).mean() > 0.5  # a filled label background above the box
    assert (drawn[30:50, 20:45] == 128).all()  # inside the box: untouched


def test_a_failing_video_writer_is_a_one_line_error(detectors, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    out = tmp_path / "out"
    (out / "clip.mp4").mkdir(parents=True)  # a folder where the annotated video should go
    with pytest.raises(DetectError, match=r"clip.mp4: cannot write the video \(Is a directory\)"):
        run_inference(detectors["ssd"], [str(clip)], out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no temporaries left


def test_output_names_are_unique_even_against_a_source_named_like_a_renamed_one(checkpoints, tmp_path, capsys):
    sources = []
    for folder, name in (("a", "x.png"), ("b", "x.png"), ("c", "x_1.png")):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / name), noise_image(20, 20, seed=len(sources)))
        sources.append(str(tmp_path / folder / name))
    for run in ("one", "two"):  # the same inputs give the same names
        code, stdout, _ = run_cli(["infer", str(checkpoints["ssd"]), *sources, "--out", str(tmp_path / run),
                                   "--json", "--device", "cpu", "-q"], capsys)
        assert code == 0 and "3 images" in stdout
        records = json.loads((tmp_path / run / "detections.json").read_text())["images"]
        assert [(Path(r["file"]).parent.name, Path(r["output"]).name) for r in records] == [
            ("a", "x.png"), ("b", "x_2.png"), ("c", "x_1.png")]
        assert sorted(p.name for p in (tmp_path / run).glob("*.png")) == ["x.png", "x_1.png", "x_2.png"]


def test_the_checkpoint_is_never_an_output(detectors, tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), noise_image(20, 20, seed=0))
    checkpoint = tmp_path / "out" / "detections.json"  # an unlucky name for a checkpoint
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    with pytest.raises(DetectError, match=f"--out {tmp_path / 'out'}: would overwrite the input {checkpoint}"):
        run_inference(detectors["ssd"], [str(image)], tmp_path / "out", write_json=True, progress=False,
                      inputs=[checkpoint])
    assert checkpoint.read_bytes() == b"weights"


def test_cli_infer_skips_an_image_whose_header_is_over_the_pixel_limit(checkpoints, tmp_path, capsys, caplog,
                                                                       monkeypatch):
    """A 600-byte JPEG declaring 30000 x 30000 pixels is skipped undecoded and named; --max-pixels sets
    the limit."""
    from tests.bombs import jpeg_bomb

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.jpg").write_bytes(jpeg_bomb(30000, 30000))
    cv2.imwrite(str(folder / "small.png"), noise_image(40, 50, seed=0))
    real_decode = cv2.imdecode

    def decode(data, flags):
        assert len(data) > 1000, "the bomb reached the decoder"
        return real_decode(data, flags)

    monkeypatch.setattr(cv2, "imdecode", decode)
    code, stdout, _ = run_cli(["infer", str(checkpoints["ssd"]), str(folder), "--out", str(tmp_path / "out"),
                               "--device", "cpu", "-q"], capsys)
    assert code == 0 and "1 images (1 skipped)" in stdout
    assert "bomb.jpg: JPEG of 30000x30000 pixels is over the limit of 40000000 pixels" in caplog.text
    code, stdout, _ = run_cli(["infer", str(checkpoints["ssd"]), str(folder / "small.png"), "--out",
                               str(tmp_path / "out2"), "--device", "cpu", "-q", "--max-pixels", "1999"], capsys)
    assert code == 0 and "0 images (1 skipped)" in stdout
    assert "small.png: PNG of 50x40 pixels is over the limit of 1999 pixels" in caplog.text


def test_cli_infer_follows_no_folder_link_twice(checkpoints, tmp_path, capsys):
    """A glob or a folder over symlink loops ends, and finds each image once."""
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    cv2.imwrite(str(root / "a" / "x.jpg"), noise_image(20, 20, seed=0))
    (root / "a" / "up").symlink_to(root)  # a loop back to the top
    (root / "a" / "again").symlink_to(root / "a")  # a loop onto itself
    (root / "b").symlink_to(root / "a")  # a second way to the same folder
    for source in (f"{root}/**/*.jpg", str(root)):
        code, stdout, _ = run_cli(["infer", str(checkpoints["ssd"]), source, "--out", str(tmp_path / "out"),
                                   "--device", "cpu", "-q", "--json"], capsys)
        assert code == 0 and "1 images" in stdout, stdout
        [record] = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
        assert record["file"] == str(root / "a" / "x.jpg")


def test_cli_infer_reads_grey_and_gif_inputs_and_writes_colour_copies(checkpoints, tmp_path, capsys):
    """PGM (grey) and GIF inputs, as files and in a folder: annotated copies as PNG, named uniquely."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "scan.pgm"), noise_image(30, 40, seed=0)[:, :, 0])
    Image.fromarray(noise_image(30, 40, seed=1)).save(folder / "scan.gif")
    cv2.imwrite(str(folder / "scan.png"), noise_image(30, 40, seed=2))
    for sources in ([str(folder / "scan.pgm"), str(folder / "scan.gif")], [str(folder)]):
        out = tmp_path / f"out{len(sources)}"
        code, stdout, _ = run_cli(["infer", str(checkpoints["ssd"]), *sources, "--out", str(out), "--device", "cpu",
                                   "-q", "--score-threshold", "0"], capsys)
        assert code == 0 and stdout.startswith(f"{len(list(out.glob('*.png')))} images"), stdout
        written = sorted(p.name for p in out.iterdir())
        expected = ["scan.png", "scan_1.png"] if len(sources) == 2 else ["scan.png", "scan_1.png", "scan_2.png"]
        assert written == expected
        for name in written:
            assert cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).shape == (30, 40, 3)


def test_cli_infer_reads_a_float_tiff_of_0_to_255_like_its_uint8_twin(checkpoints, tmp_path, capsys):
    image = noise_image(40, 50, seed=3)
    cv2.imwrite(str(tmp_path / "float.tif"), image.astype(np.float32))
    cv2.imwrite(str(tmp_path / "uint8.png"), image)
    code, _, _ = run_cli(["infer", str(checkpoints["ssd"]), str(tmp_path / "float.tif"), str(tmp_path / "uint8.png"),
                          "--out", str(tmp_path / "out"), "--device", "cpu", "-q", "--json", "--score-threshold",
                          "0"], capsys)
    assert code == 0
    float_record, uint8_record = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    assert float_record["detections"] and float_record["detections"] == uint8_record["detections"]


def test_cli_infer_to_a_full_disk_is_one_line_and_leaves_only_whole_files(checkpoints, tmp_path):
    from tests.full_disk import run_on_full_disk

    images = tmp_path / "images"
    images.mkdir()
    for index in range(12):
        cv2.imwrite(str(images / f"noise{index:02d}.png"), noise_image(64, 64, seed=index))  # about 12 KB each
    clip = write_video(tmp_path / "clip.mp4", frames=20)
    for sources, size in (([str(images)], "48k"), ([str(clip)], "16k")):
        folder = tmp_path / f"full_{size}"
        done = run_on_full_disk(["infer", str(checkpoints["ssd"]), *sources, "--out", str(folder), "--device", "cpu",
                                 "-q", "--json"], folder, size)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"error: no space left on {folder}: ") and line.endswith(
            " not written (free some space, or choose another folder)")
        assert not any(".tmp" in name for name in done.files), done.files
        written = {name: size for name, size in done.files.items() if name.endswith(".png")}
        assert all(size > 8000 for size in written.values()), done.files  # whole annotated copies only
        assert "clip.mp4" not in done.files and "clip.jsonl" not in done.files


def test_cli_infer_classes_may_hold_commas_and_an_empty_list_is_an_error(checkpoints, tmp_path, capsys):
    state = torch.load(checkpoints["ssd"], weights_only=True)
    names = ["raccoon, adult", "raccoon, young", "circle"][:len(state["class_names"])]
    torch.save({**state, "class_names": names}, tmp_path / "commas.pt")
    cv2.imwrite(str(tmp_path / "noise.png"), noise_image(64, 64, seed=5))
    base = ["infer", str(tmp_path / "commas.pt"), str(tmp_path / "noise.png"), "--device", "cpu", "-q", "--json",
            "--score-threshold", "0"]
    kept = {}
    for selection in ("raccoon, adult", "raccoon, adult,circle", " circle , raccoon, young"):
        code, _, err = run_cli([*base, "--out", str(tmp_path / "out"), "--classes", selection], capsys)
        assert code == 0, err
        [record] = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
        kept[selection] = {detection["class_name"] for detection in record["detections"]}
    assert kept["raccoon, adult"] == {"raccoon, adult"}
    assert kept["raccoon, adult,circle"] <= {"raccoon, adult", "circle"} and "circle" in kept["raccoon, adult,circle"]
    assert kept[" circle , raccoon, young"] <= {"circle", "raccoon, young"}
    for selection, message in ((",", "classes: no class name given"), (" , ", "classes: no class name given"),
                               ("raccoon", "unknown class(es) raccoon; the model has: raccoon, adult; raccoon, young")):
        code, _, err = run_cli([*base, "--out", str(tmp_path / "bad"), "--classes", selection], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_cli_infer_writes_videos_of_any_size_with_their_own_timestamps(checkpoints, tmp_path, capsys):
    """A 1 x 1 clip and an odd-sized one (the encoder needs even sizes of at least 2: padded, never
    cropped), and a variable-frame-rate clip whose JSONL keeps the container's times."""
    from tests.infer.test_sources import write_vfr_video

    clips = {}
    for name, (width, height) in (("one", (1, 1)), ("odd", (31, 17))):
        writer = cv2.VideoWriter(str(tmp_path / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
        for index in range(4):
            writer.write(noise_image(height, width, seed=index))
        writer.release()
        capture = cv2.VideoCapture(str(tmp_path / f"{name}.avi"))  # the size the frames come out at
        clips[name] = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert clips["one"] == (1, 1)
    times = [0.0, 0.1, 0.5, 0.55, 1.5]
    write_vfr_video(tmp_path / "vfr.mp4", times)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(checkpoints["ssd"]), str(tmp_path / "one.avi"), str(tmp_path / "odd.avi"),
                                 str(tmp_path / "vfr.mp4"), "--out", str(out), "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    assert "3 videos (13 frames)" in stdout
    for name, (width, height) in clips.items():
        capture = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 4
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
            max(2, width + width % 2), max(2, height + height % 2))
        records = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert [record["time"] for record in records] == [0.0, 0.1, 0.2, 0.3]
    records = [json.loads(line) for line in (out / "vfr.jsonl").read_text().splitlines()]
    assert [record["time"] for record in records] == times


def test_cli_infer_bounds_the_frames_a_video_batch_holds(checkpoints, tmp_path, capsys, caplog, monkeypatch):
    """`--batch-size 100000` no longer buffers a whole video: a model call takes at most
    MAX_VIDEO_BATCH_PIXELS of frames (here lowered to 4 frames of 48 x 32)."""
    import detect.infer.run as infer_module

    clip = write_video(tmp_path / "clip.mp4", frames=10)
    monkeypatch.setattr(infer_module, "MAX_VIDEO_BATCH_PIXELS", 4 * 48 * 32)
    calls = []
    original = infer_module.Detector.detect_arrays

    def counting(self, images, *args, **kwargs):
        calls.append(len(images))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(infer_module.Detector, "detect_arrays", counting)
    code, stdout, err = run_cli(["infer", str(checkpoints["ssd"]), str(clip), "--out", str(tmp_path / "out"),
                                 "--device", "cpu", "-q", "--batch-size", "100000"], capsys)
    assert code == 0, err
    assert calls == [4, 4, 2] and "1 videos (10 frames)" in stdout
    assert "clip: 4 frames per model call instead of --batch-size 100000" in caplog.text


def test_no_detection_above_the_threshold_says_the_best_score(checkpoints, tmp_path, capsys):
    from tests.conftest import run_detect
    from tests.data.conftest import write_image

    image = write_image(tmp_path / "a.jpg", 64, 64)
    code, out, err = run_detect(["infer", checkpoints["ssd"], image, "--out", tmp_path / "out", "-t", "1.0",
                                 "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    assert ": 0 detections in" in out
    hint = out.strip().splitlines()[-1]
    assert hint.startswith("hint: no detection scored --score-threshold 1 or more; the best score was 0.")
    best = float(hint.split("the best score was ")[1].split()[0])
    code, out, err = run_detect(["infer", checkpoints["ssd"], image, "--out", tmp_path / "out2", "-t", str(best),
                                 "--device", "cpu", "-q"], capsys)
    assert code == 0 and ": 0 detections" not in out and "hint" not in out, out
