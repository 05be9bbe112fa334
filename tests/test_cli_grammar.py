"""One grammar for the command line: global --debug / --quiet anywhere, --version, typed choices listed in
--help and refused in one line, help that renders as written, and renamed options that keep working for a
release with a one-line notice."""

from __future__ import annotations

import pytest

import detect
from detect import progress
from detect.cli import hoisted_global_flags
from detect.data.synthetic import generate_synthetic
from tests.conftest import run_detect


def test_version(capsys):
    code, out, _ = run_detect(["--version"], capsys)
    assert code == 0 and out.strip() == f"detect {detect.__version__}"


def test_global_flags_move_in_front_of_the_command():
    assert hoisted_global_flags(["infer", "m.pt", "a.jpg", "-q", "--debug"]) == [
        "--quiet", "--debug", "infer", "m.pt", "a.jpg"]
    # Past a lone `--` an argument is a value, never a flag.
    assert hoisted_global_flags(["infer", "m.pt", "--", "--quiet"]) == ["infer", "m.pt", "--", "--quiet"]


def test_quiet_anywhere_turns_the_bars_off_for_that_command_only(capsys):
    code, _, _ = run_detect(["models", "--quiet"], capsys)
    assert code == 0 and not progress.bars_enabled()
    code, _, _ = run_detect(["models"], capsys)
    assert code == 0 and progress.bars_enabled()


def test_debug_after_the_command_shows_the_traceback(tmp_path, capsys):
    code, _, err = run_detect(["eval", tmp_path / "absent.pt"], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(detect.errors.DetectError):
        run_detect(["eval", tmp_path / "absent.pt", "--debug"], capsys)


@pytest.mark.parametrize("args, option, names", [
    (["eval", "x.pt", "--metric", "map50"], "--metric", ["voc07", "voc12", "coco", "all"]),
    (["eval", "x.pt", "--coco-backend", "fast"], "--coco-backend", ["numpy", "pycocotools"]),
    (["infer", "m.pt", "a.jpg", "--codec", "vp9"], "--codec", ["h264", "hevc", "mpeg4"]),
    (["train", "--data", "d", "--model", "yolo"], "--model", ["ssdlite320", "frcnn_fpn"]),
])
def test_a_wrong_choice_is_one_line_with_the_choices(args, option, names, capsys):
    code, _, err = run_detect(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert option in err and all(f"'{name}'" in err for name in names), err


def test_help_lists_the_choices_and_renders_as_written(capsys):
    code, out, _ = run_detect(["eval", "--help"], capsys)
    assert code == 0
    assert "<voc07|voc12|coco|all>" in out and "<raise|skip>" in out
    assert "[x, y, w, h]" in out  # not read as markup
    code, out, _ = run_detect(["train", "--help"], capsys)
    assert "ssdlite320" in out and "-o, --out" in out and "--output-dir" not in out  # the old name is hidden


def test_old_option_names_work_for_a_release_with_a_notice(tmp_path, capsys):
    data = tmp_path / "voc"
    generate_synthetic(data, format="voc", num_images=6, image_size=64)
    code, _, err = run_detect(["data", "convert", "-o", tmp_path / "yolo", "--data", data, "--to", "yolo"], capsys)
    assert code == 0 and (tmp_path / "yolo" / "data.yaml").is_file()
    assert "warning: --to is deprecated and goes in the next release; use --format" in err
    code, _, err = run_detect(["data", "convert", "-o", tmp_path / "coco", "--data", data, "--format", "coco"], capsys)
    assert code == 0 and "deprecated" not in err
    code, _, err = run_detect(["data", "convert", "-o", tmp_path / "x", "--data", data, "--to", "coco", "--format",
                               "coco"], capsys)
    assert code == 2 and "--to is the old name of --format; give --format only" in err
    code, _, err = run_detect(["data", "convert", "-o", tmp_path / "x", "--data", data], capsys)
    assert code == 2 and "give --format" in err
