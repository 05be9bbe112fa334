"""train.loggers: [mlflow]: params, metrics and artifacts in a local MLflow file store; a resume continues
the same MLflow run."""

from __future__ import annotations

import pytest

from tests.engine.test_eval_checks import TINY, run, sets

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install '.[mlflow]')")


def test_a_run_and_its_resume_log_to_one_mlflow_run(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # a file: URI of the user's works without MLflow's opt-in
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    run_dir = tmp_path / "run"
    args = ["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
            *sets(f"data.root={tmp_path / 'shapes'}", *TINY, "train.loggers=[csv, mlflow]", "train.eval_every=1",
                 "train.log_every=1")]
    code, _, err = run(args, capsys)
    assert code == 0, err
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    client = MlflowClient(store)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run"
    assert logged.data.params["train.epochs"] == "1" and logged.data.params["model.arch"] == "ssd"
    assert {"train/loss", "train/lr", "epoch/loss", "val/map"} <= set(logged.data.metrics)
    assert {"best.pt", "config.yaml", "curves.png", "results.csv"} <= {a.path for a in client.list_artifacts(run_id)}
    assert not list(run_dir.glob("events.out.tfevents*"))  # tensorboard left out of train.loggers

    code, _, err = run([*args, "--set", "train.epochs=2", "--resume", "auto"], capsys)
    assert code == 0, err
    assert (run_dir / "mlflow_run_id").read_text().strip() == run_id
    history = client.get_metric_history(run_id, "epoch/loss")
    assert sorted(point.step for point in history) == [1, 2]
    assert client.get_experiment(logged.info.experiment_id).name == "synthetic_ssd"


def test_without_mlflow_the_run_is_refused_before_it_writes(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("no mlflow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    run_dir = tmp_path / "run"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
                        *sets(f"data.root={tmp_path / 'shapes'}", *TINY, "train.loggers=[mlflow]")], capsys)
    assert code != 0 and "pip install 'detect[mlflow]'" in err and err.count("\n") == 1
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_a_store_that_cannot_be_used_is_one_line_before_the_run_writes(tmp_path, capsys, monkeypatch):
    import time

    from detect import outputs

    run_dir = tmp_path / "run"
    args = ["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(run_dir),
            *sets(f"data.root={tmp_path / 'shapes'}", *TINY, "train.loggers=[mlflow]")]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing answers
    started = time.perf_counter()
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "MLFLOW_TRACKING_URI http://127.0.0.1:9: no server answered within 5 s" in err
    assert time.perf_counter() - started < 60  # not MLflow's minutes of retries
    assert not run_dir.exists()

    store = tmp_path / "store"
    store.mkdir()
    probe = outputs.tempfile.TemporaryFile

    def store_refuses(*args, dir=None, **kwargs):  # a read-only folder, as root meets it
        if dir is not None and store.samefile(dir):
            raise PermissionError(13, "Permission denied")
        return probe(*args, dir=dir, **kwargs)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(store))
    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", store_refuses)
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"MLflow store {store}: cannot write there (Permission denied)" in err
    assert not run_dir.exists()
