"""`detect train` then `detect eval CKPT` with the real data pipeline and detectors, tiny and on CPU."""

from __future__ import annotations

import json

import pytest

from detect.checkpoints import build_model_from_checkpoint, load_checkpoint
from detect.cli import main

TINY = [
    "data.synth.num_images=8", "data.synth.image_size=96", "data.num_workers=0", "data.synth.val_fraction=0.25",
    "train.epochs=1", "train.batch_size=3", "train.warmup_iters=1", "train.log_every=1", "eval.batch_size=2",
]
ARCH = {
    "synthetic_faster_rcnn": ["input.min_size=64", "input.max_size=64", "model.anchors.sizes=[16,32]",
                              "model.rpn.post_nms_top_n_test=20"],
    "synthetic_ssd": ["input.size=64", "model.ssd.aspect_ratios=[[2.0],[2.0],[2.0]]"],
    "synthetic_ssdlite": ["input.size=64", "model.ssd.aspect_ratios=[[2.0],[2.0],[2.0]]"],
}


def run_cli(args):
    with pytest.raises(SystemExit) as exited:
        main(args)
        raise SystemExit(0)
    return exited.value.code


@pytest.mark.slow
@pytest.mark.parametrize("config", list(ARCH))
def test_train_then_eval_checkpoint(tmp_path, config, capsys):
    sets = [f"data.root={tmp_path / 'shapes'}"] + TINY + ARCH[config]
    set_args = [arg for value in sets for arg in ("--set", value)]
    run_dir = tmp_path / "run"
    assert run_cli(["train", "--config", config, "--device", "cpu", "--out", str(run_dir), *set_args]) == 0
    assert {"config.yaml", "train.log", "metrics.jsonl", "last.pt", "best.pt"} <= {p.name for p in run_dir.iterdir()}
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["class_names"] == ["circle", "square", "triangle", "star", "ring"]
    model, cfg, names = build_model_from_checkpoint(run_dir / "best.pt")
    assert not model.training and cfg.name == config and names == checkpoint["class_names"]
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert run_cli(["eval", str(run_dir / "best.pt"), "--device", "cpu", "--metric", "all",
                    "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "| **mAP**" in printed and "circle" in printed
    evaluated = json.loads(out_json.read_text())
    trained = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_eval = [r for r in trained if r["type"] == "eval"][-1]
    assert evaluated["voc07"]["map"] == pytest.approx(last_eval["map"], abs=1e-6)


def test_eval_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert run_cli(["eval", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none.pt'}: checkpoint not found"
