"""tools/gpu_checks.sh: valid shell, and an unknown stage is refused with the usage line (its stages
run on the GPU machine; `DEVICE=cpu` tries one here, too slow for the default suite)."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "gpu_checks.sh"


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_unknown_stage_prints_usage(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "nonsense"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
    assert result.returncode == 2
    assert "usage: bash tools/gpu_checks.sh prepare|bench|compare-ssd|compare-frcnn" in result.stderr
