"""tools/compare_imbalance.py: arms x seeds trained in their own processes, the table of per-class AP
means, and finished runs read back instead of trained again."""

from __future__ import annotations

import json

from tests.conftest import load_tool
from tests.engine.test_eval_checks import TINY


def test_two_arms_one_seed_give_a_table_and_finished_runs_are_reused(tmp_path, capsys):
    tool = load_tool("compare_imbalance")
    args = ["--out", str(tmp_path / "runs"), "--seeds", "0", "--arm", "plain=", "--arm",
            "weighted=train.class_weights=auto", *[arg for value in [f"data.root={tmp_path / 'shapes'}", *TINY]
                                                   for arg in ("--set", value)]]
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| arm | AP circle (%)") and "| weighted |" in out
    table = json.loads((tmp_path / "runs" / "table.json").read_text())
    assert set(table["summary"]) == {"plain", "weighted"} and table["arms"]["weighted"] == ["train.class_weights=auto"]
    log = (tmp_path / "runs" / "weighted_seed0" / "train.log").read_text()
    assert "class weights of the classification loss" in log
    stamp = (tmp_path / "runs" / "plain_seed0" / "last.pt").stat().st_mtime
    assert tool.main(args) == 0  # read, not trained again
    assert (tmp_path / "runs" / "plain_seed0" / "last.pt").stat().st_mtime == stamp
