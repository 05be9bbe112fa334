"""The run folder: where a run writes, which checkpoint `--resume` continues, and the records a
resume replays.

    new_run_dir(config, output_dir)                  --output-dir, else runs/<config>/<timestamp>/
    find_resume_checkpoint(config, resume, output_dir)
    check_run_folder(run_dir, config, config_file, resuming)   writable, replaces no input
    forget_lost_records(metrics_path, checkpoint)    metrics.jsonl cut back to the checkpoint
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from detect.config import Config
from detect.errors import DetectError


def new_run_dir(config: Config, output_dir: str | Path | None) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.train.output_dir) / config.name / stamp


def find_resume_checkpoint(config: Config, resume: str, output_dir: str | Path | None) -> Path:
    """`auto`: the newest checkpoint of --output-dir, else of the newest run folder of this config;
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


def check_run_folder(run_dir: Path, config: Config, config_file: Path | None, resuming: bool) -> None:
    """The run folder can be written, and none of its files replaces an input of the run: the config
    file, a checkpoint given as model.pretrained."""
    from detect.outputs import refuse_overwrite, writable_folder

    pretrained = Path(config.model.pretrained) if config.model.pretrained not in ("imagenet", "coco", "none") else None
    outputs = [run_dir / name for name in ("best.pt", "train.log", "metrics.jsonl")]
    if not resuming:  # a resumed run goes on in its own folder: its last.pt and config.yaml are its own
        outputs += [run_dir / "last.pt", run_dir / "config.yaml"]
    refuse_overwrite("--output-dir", outputs, [config_file, pretrained], given=run_dir)
    writable_folder("--output-dir", run_dir)


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
