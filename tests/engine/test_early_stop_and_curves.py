"""Early stopping (train.patience) and its resume; results.csv and curves.png after every epoch;
`detect plot` of several runs."""

from __future__ import annotations

import csv
import json

from detect.checkpoints import load_checkpoint
from detect.engine.curves import epoch_rows
from tests.engine.test_eval_checks import TINY, run, sets

PNG = b"\x89PNG\r\n\x1a\n"


def train(tmp_path, capsys, run_dir, *overrides, resume=False):
    args = ["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
            *sets(f"data.root={tmp_path / 'shapes'}", *TINY, *overrides)]
    return run(args + (["--resume", "auto"] if resume else []), capsys)


def test_a_stalled_run_stops_and_its_resume_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """Validation mAPs of 0.5 and then lower: the best stays at epoch 1, patience 2 ends the run after
    epoch 3 of 10."""
    import detect.engine.train as train_module

    scores = iter([0.5, 0.4, 0.45, 0.3, 0.2, 0.1])
    monkeypatch.setattr(train_module, "headline_map", lambda results: next(scores))
    run_dir = tmp_path / "run"
    stalled = ("train.epochs=10", "train.patience=2", "train.eval_every=1")
    code, out, err = train(tmp_path, capsys, run_dir, *stalled)
    assert code == 0, err
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert (checkpoint["epoch"], checkpoint["best_epoch"]) == (3, 1)
    log = (run_dir / "train.log").read_text()
    assert "early stop after epoch 3: no better validation mAP for 2 epochs (train.patience 2)" in log
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "early_stop"] == [3]

    files_before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
    code, out, err = train(tmp_path, capsys, run_dir, *stalled, resume=True)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{run_dir / 'last.pt'}: nothing to resume: it stopped early at epoch 3" in err
    # Said, and nothing written: no new TensorBoard file, log line or checkpoint.
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == files_before
    code, out, err = train(tmp_path, capsys, run_dir, "train.epochs=10", "train.patience=3", "train.eval_every=1",
                           resume=True)
    assert code == 0, err
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 4  # a larger patience trains on, and stops again


def test_results_csv_and_curves_png_hold_every_epoch(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = train(tmp_path, capsys, run_dir, "train.epochs=2", "train.eval_every=2")
    assert code == 0, err
    with open(run_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert {"step", "train_seconds", "loss", "loss_cls", "loss_box", "lr", "map", "eval_seconds"} <= set(rows[0])
    assert rows[0]["map"] == "" and float(rows[1]["map"]) >= 0.0  # evaluated at epoch 2 only
    assert float(rows[1]["loss"]) > 0 and float(rows[0]["lr"]) > 0  # (the cosine schedule ends at 0)
    assert (run_dir / "curves.png").read_bytes()[:8] == PNG

    # A resumed run adds its epochs to the same files.
    code, _, err = train(tmp_path, capsys, run_dir, "train.epochs=3", "train.eval_every=2", resume=True)
    assert code == 0, err
    assert [row["epoch"] for row in epoch_rows(run_dir / "metrics.jsonl")] == [1, 2, 3]
    with open(run_dir / "results.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]

    other = tmp_path / "other"
    code, _, err = train(tmp_path, capsys, other, "train.epochs=1")
    assert code == 0, err
    figure = tmp_path / "both.png"
    code, out, err = run(["plot", str(run_dir), str(other), "--out", str(figure)], capsys)
    assert code == 0, err
    assert figure.read_bytes()[:8] == PNG
    code, _, err = run(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")], capsys)
    assert code != 0 and "no metrics.jsonl here" in err


def test_resuming_a_run_that_trained_all_its_epochs_says_so_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = train(tmp_path, capsys, run_dir, "train.epochs=1")
    assert code == 0, err
    files_before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
    code, _, err = train(tmp_path, capsys, run_dir, "train.epochs=1", resume=True)
    assert code == 2 and err.count("\n") == 1, err
    assert "nothing to resume: the run has trained all its 1 epochs; to train on, raise train.epochs" in err
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == files_before
    code, _, err = train(tmp_path, capsys, run_dir, "train.epochs=2", resume=True)
    assert code == 0 and load_checkpoint(run_dir / "last.pt")["epoch"] == 2, err


def test_a_refused_run_leaves_no_folder_behind(tmp_path, capsys):
    from tests.data.conftest import write_image

    data = tmp_path / "unlabelled"
    write_image(data / "images" / "train" / "a.jpg", 32, 32)
    (data / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [thing]\n")
    run_dir = tmp_path / "runs" / "nested" / "run"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *sets(f"data.root={data}", "data.format=yolo", "data.classes=null")], capsys)
    assert code == 2 and "not one object" in err, err
    assert not (tmp_path / "runs").exists()


def test_plot_reads_past_values_that_are_not_numbers(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(
        '{"type": "epoch", "epoch": 1, "mean_loss_cls": "abc", "mean_loss_box": 0.5, "lr": null}\n'
        '{"type": "epoch", "epoch": 2, "mean_loss_cls": 1.0, "mean_loss_box": 0.4, "lr": 0.1, "step": "x"}\n')
    code, out, err = run(["plot", str(run_dir), "--out", str(tmp_path / "curves.png")], capsys)
    assert code == 0, err
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
