"""A run's numbers in MLflow (`train.loggers: [..., mlflow]`): the resolved config as params, every scalar
the run logs as a metric (per step, and per epoch), and best.pt, config.yaml, curves.png and results.csv
as artifacts when the run ends.

Where: MLFLOW_TRACKING_URI when set (a server, a database, a folder), else the folder `mlruns/` in the
working directory as a local file store (MLflow keeps file stores working but in maintenance: we opt in
with MLFLOW_ALLOW_FILE_STORE, so nothing needs a server or a network). The store is checked once before
the run writes anything (check_tracking_store): a server that does not answer in 5 s, or a folder that
cannot be written, is one line. The experiment is the config's
name, the MLflow run is named after the run folder. The run folder keeps the MLflow run id
(`mlflow_run_id`), so `--resume` in place continues the same MLflow run.

mlflow is optional: `pip install 'detect[mlflow]'` (the client only, mlflow-skinny).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from detect.config import Config, config_to_dict
from detect.engine.resume_check import flatten
from detect.errors import ConfigError, DetectError
from detect.outputs import writable_folder

RUN_ID_FILE = "mlflow_run_id"
ARTIFACTS = ("best.pt", "config.yaml", "curves.png", "results.csv")
PARAM_VALUE_LIMIT = 6000  # MLflow's longest param value


STORE_TIMEOUT_S = 5.0  # how long the check before a run waits for a tracking server to answer


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else ./mlruns; a file store (a file: URI or a plain path, ours or the
    user's) is opted in to, as MLflow asks of every file store now."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
    if store_folder(uri) is not None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def store_folder(uri: str) -> Path | None:
    """The folder of a file store (`file:///...` or a plain path), None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(uri) if parsed.scheme == "" or len(parsed.scheme) == 1 else None  # `C:` is a Windows drive


def check_tracking_store() -> None:
    """Before a run writes anything: mlflow is installed and its store can be used, checked once and
    quickly (a server that does not answer would otherwise cost minutes of MLflow's retries, after the
    run folder is written). A ConfigError naming the store otherwise."""
    require_mlflow()
    uri = tracking_uri()
    folder = store_folder(uri)
    if folder is not None:
        existing = next(path for path in [folder, *folder.absolute().parents] if path.exists())
        try:
            writable_folder("MLflow store", existing)
        except DetectError as error:
            raise ConfigError(f"{error} (the MLflow store {uri}; set MLFLOW_TRACKING_URI, or leave mlflow out of "
                              "train.loggers)") from None
        return
    if urlparse(uri).scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=STORE_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            return  # it answered: a server is there
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise ConfigError(f"MLFLOW_TRACKING_URI {uri}: no server answered within {STORE_TIMEOUT_S:.0f} s "
                              f"({reason}); start it, correct the URI, or leave mlflow out of train.loggers") from None


def require_mlflow() -> None:
    """A ConfigError when mlflow is not installed: a run checks this before it writes anything."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("train.loggers names mlflow, which is not installed: pip install 'detect[mlflow]' "
                          "(or leave mlflow out of train.loggers)") from None


class MlflowSink:
    def __init__(self, config: Config, run_dir: Path, resuming: bool) -> None:
        require_mlflow()
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = tracking_uri()
        self.client = MlflowClient(uri)
        self.uri = uri
        id_file = Path(run_dir) / RUN_ID_FILE
        if resuming and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(config.name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(config.name)
        self.run_id = self.client.create_run(experiment_id, run_name=Path(run_dir).name).info.run_id
        id_file.write_text(self.run_id + "\n")
        params = [Param(key, str(value)[:PARAM_VALUE_LIMIT]) for key, value in flatten(config_to_dict(config)).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), stamp, step) for key, value in values.items() if value is not None]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, run_dir: Path, failed: bool = False) -> None:
        for name in ARTIFACTS:
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
