"""tools/gpu_checks.sh: valid shell, and an unknown stage is refused with the usage line (its stages
run on the GPU machine; `DEVICE=cpu` tries one here, too slow for the default suite)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "gpu_checks.sh"


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_unknown_stage_prints_usage(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "nonsense"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
    assert result.returncode == 2
    assert "usage: bash tools/gpu_checks.sh prepare|run" in result.stderr


def test_step_limits_fit_one_nine_minute_run():
    """Every step's timeout (and each comparison's) adds up to at most 9 minutes with room for the
    wheel install: the whole run fits one call on a GPU machine."""
    text = SCRIPT.read_text()
    steps = [int(limit) for limit in re.findall(r"^\s*step (\d+) ", text, flags=re.MULTILINE)]
    data_configs = len(re.search(r"for config in ([\w ]+); do", text).group(1).split())
    comparisons = [int(limit) for limit in re.findall(r"^\s*compare \w+ \w+ \S+ (\d+)$", text, flags=re.MULTILINE)]
    assert len(comparisons) == 2 and len(steps) == 3
    speed, data, gpu_tests = steps
    total = speed + data * data_configs + sum(comparisons) + gpu_tests
    assert total <= 540 - 20
    assert f"add up to {total} s" in text
