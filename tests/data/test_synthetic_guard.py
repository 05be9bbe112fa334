"""Synthetic data is generated only where nothing of a user's can be lost: into an absent or empty folder,
or over an earlier generation (its marker file lists every file it wrote), and always whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from detect.data import synthetic
from detect.data.synthetic import MARKER, generate_synthetic, read_marker
from detect.errors import DetectError
from tests.conftest import run_detect
from tests.data.conftest import write_voc


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def users_voc_without_image_sets(root: Path) -> Path:
    """A labelImg-style folder: images and XML, no ImageSets/Main."""
    write_voc(root, {"a": [("cat", 1, 1, 10, 10)], "b": [("dog", 2, 2, 20, 20)]}, {})
    (root / "ImageSets" / "Main").rmdir()
    (root / "ImageSets").rmdir()
    return root


def test_synthetic_config_refuses_a_folder_of_user_files(tmp_path, capsys):
    root = users_voc_without_image_sets(tmp_path / "mine")
    before = snapshot(root)
    code, _, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", f"data.root={root}"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"data.root {root}: holds no VOC dataset" in err and "generates only into a new or empty folder" in err
    assert snapshot(root) == before


def test_synthetic_config_generates_into_a_new_folder_and_says_so(tmp_path, capsys, caplog):
    root = tmp_path / "typo"
    code, _, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", f"data.root={root}",
                               "--set", "data.synth.num_images=6", "--set", "data.synth.image_size=48",
                               "--split", "train"], capsys)
    assert code == 0, err
    said = [record.getMessage() for record in caplog.records if "generating" in record.getMessage()]
    assert said == [f"data.root {root}: no dataset there; generating the synthetic shapes (6 images of 48 px, "
                    "seed 0) into it"]
    assert read_marker(root)["settings"]["num_images"] == 6


def test_data_synth_refuses_a_folder_of_user_files(tmp_path, capsys):
    root = users_voc_without_image_sets(tmp_path / "mine")
    before = snapshot(root)
    code, _, err = run_detect(["data", "synth", "-o", root, "-n", "4", "-s", "32"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"detect data synth -o {root}: not empty" in err
    assert snapshot(root) == before


def test_data_synth_replaces_its_own_generation_but_not_once_a_user_added_a_file(tmp_path, capsys):
    root = tmp_path / "shapes"
    assert run_detect(["data", "synth", "-o", root, "-n", "4", "-s", "32", "--seed", "1"], capsys)[0] == 0
    assert run_detect(["data", "synth", "-o", root, "-n", "6", "-s", "32", "--seed", "2", "--format", "yolo"],
                      capsys)[0] == 0
    assert read_marker(root)["settings"] == {"format": "yolo", "num_images": 6, "image_size": 32, "seed": 2,
                                             "val_fraction": 0.2}
    assert not (root / "JPEGImages").exists()  # the earlier generation went whole
    (root / "notes.txt").write_text("mine")
    before = snapshot(root)
    code, _, err = run_detect(["data", "synth", "-o", root, "-n", "4", "-s", "32"], capsys)
    assert code == 2 and "not empty" in err
    assert snapshot(root) == before


def test_a_generation_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    calls = []

    def encode_then_fail(image):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return b"jpeg"

    monkeypatch.setattr(synthetic, "encode_jpeg", encode_then_fail)
    monkeypatch.setattr("detect.outputs.free_bytes", lambda folder: 0)
    with pytest.raises(DetectError, match="no space left"):
        generate_synthetic(root, num_images=6, image_size=32)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # nor a staging folder beside it


def test_marker_lists_every_file(tmp_path):
    generate_synthetic(tmp_path / "s", format="coco", num_images=5, image_size=32)
    files = {path.relative_to(tmp_path / "s").as_posix() for path in (tmp_path / "s").rglob("*") if path.is_file()}
    assert set(read_marker(tmp_path / "s")["files"]) == files - {MARKER}


def test_video_clips_are_built_whole_and_frames_are_bounded(tmp_path, monkeypatch, capsys):
    from detect.data import synthetic_video

    out = tmp_path / "clips"
    original = synthetic_video.generate_clip

    def second_clip_fails(path, *args):
        if path.name == "clip_1.mp4":
            raise KeyboardInterrupt
        return original(path, *args)

    monkeypatch.setattr(synthetic_video, "generate_clip", second_clip_fails)
    with pytest.raises(KeyboardInterrupt):
        synthetic_video.generate_video_clips(out, num_clips=2, frames=2, width=64, height=48)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    code, _, err = run_detect(["data", "synth", "-o", out, "--video", "--frames", "100000"], capsys)
    assert code == 2 and "less than or equal to 10000" in err
