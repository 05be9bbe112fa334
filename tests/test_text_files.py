"""Files users hand us, read within bounds: YAML whose aliases would expand into gigabytes, label and
list files far larger than any real one; each refused in one line, before it costs memory."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from detect.text_files import MAX_YAML_NODES, expanded_size, parse_yaml, read_lines
from tests.conftest import run_detect


def billion_laughs(levels: int = 9) -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings from a file of about 700 bytes."""
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def memory_cap():
    """At most 8 GiB of address space above what the process maps (the libraries the commands load are
    mapped first): an expansion fails the test with MemoryError instead of taking the machine."""
    import cv2  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import detect.data.build  # noqa: F401

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as stream:
        held = int(stream.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + (8 << 30), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_aliases_are_counted_as_expanded():
    import yaml

    text = "a: &x [1, 2, 3]\nb: [*x, *x]\n"
    # the mapping, key a, [1, 2, 3] with its items, key b, and b's list holding two copies of the first
    assert expanded_size(yaml.compose(text), 10**6) == 1 + 1 + 4 + 1 + (1 + 2 * 4)
    assert parse_yaml(text) == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    assert parse_yaml("") is None


def test_a_billion_laughs_config_is_one_line(tmp_path, capsys, memory_cap):
    config = tmp_path / "bomb.yaml"
    config.write_text("base: synthetic_ssd\n" + billion_laughs())
    assert len(config.read_bytes()) < 1000
    code, _, err = run_detect(["config", "show", config], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{config}: invalid YAML: its aliases expand to more than {MAX_YAML_NODES:,} values" in err


def test_a_billion_laughs_data_yaml_is_one_line(tmp_path, capsys, memory_cap):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("train: images\nval: images\nnames: [a]\n" + billion_laughs())
    code, _, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=yolo",
                         "--set", f"data.root={data_yaml}", "--set", "data.classes=null"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{data_yaml}: not valid YAML (its aliases expand to more than" in err


def test_a_billion_laughs_set_value_is_one_line(capsys, memory_cap):
    value = "{" + billion_laughs().replace("\n", ", ").rstrip(", ") + "}"
    code, _, err = run_detect(["config", "show", "synthetic_ssd", "--set", f"data.synth={value}"], capsys)
    assert code == 2 and "--set 'data.synth': the value is refused: its aliases expand" in err, err


def test_a_value_that_holds_itself_is_refused():
    import yaml

    with pytest.raises(yaml.YAMLError, match="refers to the value that holds it"):
        parse_yaml("a: &x [1, *x]\n")


def test_a_sparse_gigabyte_label_file_is_one_problem_not_memory(tmp_path, capsys, memory_cap):
    from tests.data.conftest import write_image

    write_image(tmp_path / "images" / "train" / "a.jpg", 32, 32)
    write_image(tmp_path / "images" / "train" / "b.jpg", 32, 32, seed=1)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    huge = tmp_path / "labels" / "train" / "a.txt"
    with huge.open("wb") as stream:
        stream.truncate(1 << 30)  # sparse: no disk used, a gigabyte to a reader
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [thing]\n")
    code, out, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=yolo",
                                 "--set", f"data.root={tmp_path}", "--set", "data.classes=null", "--split", "train"],
                                capsys)
    assert code == 1 and "1 error(s) found" in err
    assert f"{huge}: 1024 MiB, larger than any label file (at most 16 MiB); not read" in out


def test_lines_are_streamed_with_a_size_limit(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"\xef\xbb\xbfa\r\nb\n\nc")
    assert list(read_lines(listed, "list", 100)) == ["a", "b", "", "c"]
    listed.write_text("a\n" * 60)
    from detect.errors import DataError

    with pytest.raises(DataError, match=r"list.txt: 0 MiB, larger than any list \(at most 0 MiB\)"):
        list(read_lines(listed, "list", 100))
    utf16 = tmp_path / "u16.txt"
    utf16.write_bytes("x\ny\n".encode("utf-16"))
    assert list(read_lines(utf16, "list", 100)) == ["x", "y"]


def test_a_huge_voc_split_list_is_one_line(tmp_path, capsys):
    from tests.data.conftest import write_voc

    root = write_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 10, 10)]}, {"train": ["a"], "val": ["a"]})
    with (root / "ImageSets" / "Main" / "train.txt").open("wb") as stream:
        stream.truncate(1 << 30)
    code, _, err = run_detect(["data", "check", "--config", "synthetic_ssd", "--set", "data.format=voc",
                         "--set", f"data.root={root}", "--split", "train"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{Path(root) / 'ImageSets' / 'Main' / 'train.txt'}: 1024 MiB, larger than any VOC split file" in err
