"""torchrun with 2 processes (gloo on CPU): finite losses, one checkpoint, evaluation equal to a
single process evaluating the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detect.checkpoints import load_checkpoint
from detect.config import validate_config
from detect.evaluation.evaluate import evaluate, headline_map
from tests.engine import doubles

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "tests.engine.ddp_worker", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, failure_report(result.stderr)
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    assert len(list(out.glob("events.out.tfevents*"))) == 1  # rank 0 only
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    # 16 images over 2 ranks with batch 4: 2 steps per epoch.
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["step"] == 4 and checkpoint["epoch"] == 2
    distributed_eval = [r for r in records if r["type"] == "eval"][-1]

    config = validate_config(checkpoint["config"])
    model = doubles.TinyDetector(len(checkpoint["class_names"]))
    model.load_state_dict(checkpoint["model"])
    _, val_loader = doubles.build_loaders(config, distributed=False)
    results = evaluate(model, val_loader, checkpoint["class_names"], torch.device("cpu"), metrics="voc07",
                       iou_thresh=config.eval.iou_thresh)
    assert headline_map(results) > 0  # a non-trivial comparison
    assert distributed_eval["map"] == pytest.approx(headline_map(results), abs=1e-9)
    assert distributed_eval["voc07"]["ap"] == pytest.approx(results["voc07"]["ap"], abs=1e-9)


def failure_report(stderr: str) -> str:
    """What each rank said about its failure: the tail alone shows only the launcher's summary and
    the rank it stopped, not the rank that failed first."""
    clues = ("[rank1]", "terminate called", "what()", "Error", "Exception")
    lines = [line for line in stderr.splitlines() if any(clue in line for clue in clues)]
    return "\n".join(lines[-60:]) + "\n--- tail ---\n" + stderr[-2000:]


def test_a_killed_rank_is_named_by_the_survivor_in_one_line(tmp_path):
    """Rank 1 is killed (SIGKILL) in its second step; rank 0 stops with one line naming it, no gloo
    traceback."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    # The launcher looks at its workers every 10 s here: rank 0 meets the broken connection first,
    # instead of being stopped by the launcher's SIGTERM.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "--monitor-interval", "10", "-m", "tests.engine.ddp_worker", str(out), "kill-rank-1"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    rank_0_lines = [line for line in result.stderr.splitlines() if line.startswith(("[rank0]", "error: rank 0"))]
    assert any(line.startswith("error: rank 0: stopping: rank 1 (pid ") and "ended during training" in line
               for line in rank_0_lines), (rank_0_lines, failure_report(result.stderr))
    assert "Traceback" not in "\n".join(rank_0_lines) and "[rank0]" not in result.stderr, result.stderr[-3000:]
