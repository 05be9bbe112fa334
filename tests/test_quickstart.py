"""The README's quickstart, run as written: each command of its block in turn, in a fresh folder, with
the `detect` command this environment installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def quickstart_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    return [line for line in block[:block.index("```")].splitlines() if line.strip()]


def test_the_quickstart_runs_as_written(tmp_path):
    commands = quickstart_commands()
    assert [command.split()[:2] for command in commands] == [
        ["detect", "data"], ["detect", "data"], ["detect", "train"], ["detect", "eval"], ["detect", "infer"],
        ["detect", "export"]]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    run = tmp_path / "runs" / "quickstart"
    assert {"best.pt", "last.pt", "model.onnx"} <= {path.name for path in run.iterdir()}
    [record] = json.loads((run / "detections" / "detections.json").read_text())["images"]
    assert record["file"].endswith("000000.jpg")
