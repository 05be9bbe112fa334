"""The run folder's logs: train.log (and the console), metrics.jsonl, TensorBoard events; every scalar
also to MLflow when a sink is given (detect/engine/mlflow_sink.py).

Only rank 0 writes; on other ranks every method does nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from detect.outputs import OutOfSpaceError, is_out_of_space, out_of_space_message


class RunLogger:
    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None, mlflow=None) -> None:
        """`purge_step`: on resume, the first step to come; TensorBoard hides the events from that step
        on that the earlier run wrote (the resumed run writes them again)."""
        self.enabled = enabled and run_dir is not None
        self.run_dir = run_dir
        self._log = self._jsonl = self._tb = None
        self._mlflow = mlflow if self.enabled else None
        if not self.enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(run_dir / "train.log", "a", buffering=1)
        self._jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    @property
    def has_tensorboard(self) -> bool:
        return self._tb is not None

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        tqdm.write(message)
        self._write(self._log, _stamped(message), "train.log")

    def log_only(self, message: str) -> None:
        """A line in train.log alone (the console has it already: the CLI's error line). Best effort:
        it reports a failure, often a full disk, that may stop this write too."""
        if not self.enabled:
            return
        try:
            self._log.write(_stamped(message))
            self._log.flush()
        except OSError:
            pass

    def record(self, record: dict) -> None:
        """One JSON line in metrics.jsonl."""
        if self.enabled:
            self._write(self._jsonl, json.dumps(record) + "\n", "metrics.jsonl")

    def _write(self, handle, text: str, name: str) -> None:
        try:
            handle.write(text)
        except OSError as error:
            if is_out_of_space(error, self.run_dir):
                raise OutOfSpaceError(out_of_space_message(self.run_dir, f"a line of {name}")) from None
            raise

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self._tb is not None:
            for key, value in values.items():
                if value is not None:
                    self._tb.add_scalar(f"{prefix}/{key}", value, step)
        if self._mlflow is not None:
            self._mlflow.metrics({f"{prefix}/{key}": value for key, value in values.items()}, step)

    def image(self, tag: str, image_chw, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, image_chw, step)

    def close(self, failed: bool = False) -> None:
        for handle in (self._log, self._jsonl):
            if handle is not None:
                handle.close()
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None:
            self._mlflow.finish(self.run_dir, failed)
        self._log = self._jsonl = self._tb = self._mlflow = None
        self.enabled = False


def _stamped(message: str) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
