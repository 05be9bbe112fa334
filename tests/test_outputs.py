"""detect.outputs: no output replaces an input; an unwritable output is one line, whatever the reason."""

from __future__ import annotations

import errno
import os

import pytest

from detect import outputs
from detect.errors import DetectError
from detect.outputs import refuse_overwrite, writable_file, writable_folder


def test_an_output_that_is_an_input_is_refused_through_links_and_dots(tmp_path):
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(source)
    os.link(source, tmp_path / "hard.pt")
    for output in (source, tmp_path / "sub" / ".." / "model.pt", tmp_path / "link.pt", tmp_path / "hard.pt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(
            DetectError, match=f"--out {output}: would overwrite the input {source}; choose another path"):
            refuse_overwrite("--out", [output], [None, source])
    refuse_overwrite("--out", [tmp_path / "model.onnx", tmp_path / "new" / "model.pt"], [source])
    assert source.read_bytes() == b"weights"


def test_an_output_through_a_folder_not_yet_created_and_dots_is_refused(tmp_path):
    """`new/../model.pt`: `new` does not exist, so the path cannot be followed now; once the command
    creates its output folder it names the input."""
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    output = tmp_path / "new" / "deeper" / ".." / ".." / "model.pt"
    with pytest.raises(DetectError, match=f"--out {output}: would overwrite the input {source}"):
        refuse_overwrite("--out", [output], [source])
    assert not (tmp_path / "new").exists()


def test_the_folder_the_user_named_is_what_the_message_names(tmp_path):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"pixels")
    with pytest.raises(
        DetectError, match=f"^--out {tmp_path}: would overwrite the input {image}; choose another folder$"):
        refuse_overwrite("--out", [tmp_path / "x.jpg"], [image], given=tmp_path)


def test_a_folder_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "sub", blocker / "sub" / "deeper"):
        with pytest.raises(DetectError) as error:
            writable_folder("--out", folder)
        assert str(error.value) == f"--out {folder}: cannot create the folder, {blocker} is a file"
    with pytest.raises(
        DetectError, match=f"^--json {blocker / 'r.json'}: cannot create the folder, {blocker} is a file$"):
        writable_file("--json", blocker / "r.json")


def test_a_folder_given_as_a_file_is_refused(tmp_path):
    with pytest.raises(DetectError, match=f"^--out {tmp_path}: is a folder; give a file name$"):
        writable_file("--out", tmp_path)


def test_a_folder_that_refuses_writes_is_one_line(tmp_path, monkeypatch):
    # As root a read-only folder still accepts files; the probe's OSError is what a non-root user gets.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", refuse)
    with pytest.raises(DetectError, match=f"^--plots {tmp_path / 'p'}: cannot write there \\(Permission denied\\)$"):
        writable_folder("--plots", tmp_path / "p")


def test_a_writable_folder_is_created_and_left_clean(tmp_path):
    folder = writable_folder("--out", tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert writable_file("--json", tmp_path / "c" / "r.json") == tmp_path / "c" / "r.json"
    assert (tmp_path / "c").is_dir()
