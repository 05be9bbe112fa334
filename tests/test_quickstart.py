"""The README's first code block, run as written in a fresh folder with the `detect` command this
environment installed; and its own-data block: every form it names is found where it says, and (with
-m slow) each command trains as written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

OWN_DATA = "## Train on your own data"


def bash_blocks() -> list[list[str]]:
    """The command lines of each ```bash block of the README's own-data section, in order."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index(OWN_DATA):]
    section = section[:section.index("\n## ", len(OWN_DATA))]
    blocks = []
    for part in section.split("```bash\n")[1:]:
        blocks.append([line for line in part[:part.index("```")].splitlines() if line.strip()])
    return blocks


def detect_env(home: Path | None = None) -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    return {**env, "HOME": str(home)} if home is not None else env


def run_lines(lines: list[str], cwd: Path, env: dict, timeout: int = 600) -> None:
    for command in lines:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{command}\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"


def test_the_first_block_runs_as_written(tmp_path):
    text = (REPO_ROOT / "README.md").read_text()
    first = text[text.index("```"):]
    assert first.startswith("```bash\n"), "the README's first code block is the runnable one"
    commands = bash_blocks()[0]
    assert [command.split()[:2] for command in commands] == [
        ["detect", "data"], ["detect", "data"], ["detect", "train"], ["detect", "eval"], ["detect", "infer"],
        ["detect", "export"]]
    run_lines(commands, tmp_path, detect_env())
    run = tmp_path / "runs" / "quickstart"
    assert {"best.pt", "last.pt", "model.onnx", "config.yaml"} <= {path.name for path in run.iterdir()}
    [record] = json.loads((run / "detections" / "detections.json").read_text())["images"]
    assert record["file"].endswith("000000.jpg")
    assert "--time 1 min:" in (run / "train.log").read_text()


def own_data_paths(home: Path) -> list[Path]:
    """The --data paths of the own-data block (under HOME), each made as the form its comment names:
    a VOC devkit, a labelImg folder, a YOLO data.yaml, a COCO file."""
    from detect.data.synthetic import generate_synthetic

    paths = [Path(command.split("--data ")[1].split()[0].replace("~", str(home))) for command in bash_blocks()[1]]
    devkit, photos, data_yaml, coco_file = paths
    generate_synthetic(devkit, format="voc", num_images=40, image_size=96)
    photos.mkdir(parents=True)
    for image in (devkit / "JPEGImages").iterdir():
        shutil.copy(image, photos / image.name)
        shutil.copy(devkit / "Annotations" / f"{image.stem}.xml", photos / f"{image.stem}.xml")
    generate_synthetic(data_yaml.parent, format="yolo", num_images=40, image_size=96)
    generate_synthetic(coco_file.parent.parent, format="coco", num_images=40, image_size=96)
    return paths


def test_the_own_data_block_names_each_form_where_it_is(tmp_path):
    commands = bash_blocks()[1]
    assert len(commands) == 4 and all(command.startswith("detect train --data ~/") for command in commands)
    home = tmp_path / "home"
    forms = []
    for path in own_data_paths(home):
        done = subprocess.run(["detect", "data", "check", "--data", str(path), "--split", "train"], cwd=tmp_path,
                              env=detect_env(home), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        forms.append(done.stderr.split(" is ", 1)[1].split(" (")[0])
    assert forms == ["a VOC devkit", "a folder of images and VOC XML", "a YOLO data.yaml", "a COCO annotation file"]


@pytest.mark.slow
def test_the_own_data_block_trains_as_written(tmp_path):
    """Four runs of --time 10: forty minutes on a CPU."""
    home = tmp_path / "home"
    own_data_paths(home)
    run_lines(bash_blocks()[1], tmp_path, detect_env(home), timeout=900)
