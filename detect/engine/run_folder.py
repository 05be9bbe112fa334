"""The run folder: where a run writes, which checkpoint `--resume` continues, and the records a
resume replays.

    new_run_dir(config, output_dir)                  --out, else runs/<config>/<timestamp>/
    find_resume_checkpoint(config, resume, output_dir)
    resume_run_dir(checkpoint_path, output_dir)      the checkpoint's folder, or --out
    check_run_folder(run_dir, config, config_file, resuming_in_place)   writable, replaces no input, no
                                                     other run's
    lock_run_folder(run_dir)                         one training at a time in a folder
    carry_records(source_dir, run_dir, checkpoint)   a resume into another folder takes the logs along
    forget_lost_records(metrics_path, checkpoint)    metrics.jsonl cut back to the checkpoint

Outputs of one run never replace another's: a new run refuses a folder that holds a run, a resume
writes only in its own run's folder or in a new one, and a second training into a folder in use is
refused (an advisory lock on the folder, held for the whole run).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from detect.config import Config
from detect.errors import DetectError


def new_run_dir(config: Config, output_dir: str | Path | None) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.train.output_dir) / config.name / stamp


def find_resume_checkpoint(config: Config, resume: str, output_dir: str | Path | None) -> Path:
    """`auto`: the newest checkpoint of --out, else of the newest run folder of this config;
    else a path.

    The newest of last.pt and best.pt: both hold the whole training state, and best.pt is written
    just before last.pt, so a kill while last.pt is written (the run's first one included) keeps
    that epoch in best.pt."""
    if resume != "auto":
        return Path(resume)
    if output_dir is not None:
        found = [p for p in (Path(output_dir) / "last.pt", Path(output_dir) / "best.pt") if p.is_file()]
        if not found:
            raise DetectError(f"--resume auto: no last.pt in {output_dir}")
        return max(found, key=lambda p: p.stat().st_mtime)
    config_runs = Path(config.train.output_dir) / config.name
    runs = [p for name in ("last.pt", "best.pt") for p in config_runs.glob(f"*/{name}")] if config_runs.is_dir() else []
    if not runs:
        raise DetectError(f"--resume auto: no run folder with last.pt under {config_runs}")
    return max(runs, key=lambda p: p.stat().st_mtime)


# The files whose presence says a folder holds a run.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")


def resume_run_dir(checkpoint_path: Path, output_dir: str | Path | None) -> Path:
    """Where a resumed run writes: --out when given (the source run is then left as it is),
    else the checkpoint's own folder."""
    return Path(output_dir) if output_dir is not None else checkpoint_path.parent


def continues_in_place(run_dir: Path, checkpoint_path: Path) -> bool:
    return run_dir.resolve() == checkpoint_path.parent.resolve()


def check_run_folder(run_dir: Path, config: Config, config_file: Path | None, resuming_in_place: bool) -> None:
    """The run folder can be written, holds no other run, and none of its files replaces an input of
    the run: the config file, a checkpoint given as model.pretrained."""
    from detect.outputs import refuse_overwrite, writable_folder

    pretrained = Path(config.model.pretrained) if config.model.pretrained not in ("imagenet", "coco", "none") else None
    outputs = [run_dir / name for name in ("best.pt", "train.log", "metrics.jsonl")]
    if not resuming_in_place:  # a run resumed in place goes on in its own folder: its files are its own
        outputs += [run_dir / "last.pt", run_dir / "config.yaml"]
        holds = [name for name in RUN_FILES if (run_dir / name).exists()]
        if holds:
            raise DetectError(f"--out {run_dir}: already holds a run ({', '.join(holds)}); continue it with "
                              f"--resume auto, or choose another folder")
    refuse_overwrite("--out", outputs, [config_file, pretrained], given=run_dir)
    writable_folder("--out", run_dir)


@contextmanager
def lock_run_folder(run_dir: Path) -> Iterator[None]:
    """Holds an exclusive advisory lock on the folder itself (flock on its descriptor: no file is
    created, so a refused command leaves nothing behind); DetectError at once when another process
    holds it. Released when the run ends, however it ends (the kernel drops it with the process)."""
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DetectError(f"--out {run_dir}: another detect train is writing there now; wait for it to "
                              f"end, or choose another folder") from None
        yield
    finally:
        os.close(descriptor)


def carry_records(source_dir: Path, run_dir: Path, checkpoint: dict) -> None:
    """A resume into a new folder: best.pt, train.log and metrics.jsonl of the source run are copied
    there (metrics.jsonl cut back to the checkpoint), so the new folder holds the whole run: its best
    model so far (which the resumed run replaces only when it does better) and its history. The
    source run is only read."""
    for name in ("best.pt", "train.log", "metrics.jsonl"):
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, run_dir / name)
    forget_lost_records(run_dir / "metrics.jsonl", checkpoint)


def forget_lost_records(metrics_path: Path, checkpoint: dict) -> None:
    """Before a resume: drops the records of metrics.jsonl that came after the checkpoint (the resumed
    run writes them again as it replays those steps; after a kill -9 or a crash there can be many),
    and a half-written last line. After it means a later step, the end (or evaluation) of an epoch the
    checkpoint had not finished, or the evaluation a checkpoint with `epoch_end_due` runs again."""
    if not metrics_path.is_file():
        return
    step, epoch, epoch_end_due = checkpoint["step"], checkpoint["epoch"], bool(checkpoint.get("epoch_end_due"))
    kept = []
    for line in metrics_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind, record_epoch = record.get("type"), record.get("epoch", 0)
        later = (record.get("step", 0) > step
                 or (kind in ("epoch", "eval") and record_epoch > epoch)
                 or (kind == "eval" and epoch_end_due and record_epoch == epoch))
        if not later:
            kept.append(line)
    # Written aside and renamed: a kill now must not lose the records that stay.
    rewritten = metrics_path.with_name(f".{metrics_path.name}.tmp{os.getpid()}")
    rewritten.write_text("".join(f"{line}\n" for line in kept))
    os.replace(rewritten, metrics_path)
