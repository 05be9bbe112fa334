"""Training and evaluation from Python: what `detect train` and `detect eval` do, as functions.

    import detect
    run = detect.train(data="~/labels", time=3)                # your data, three minutes (see detect train)
    run = detect.train("synthetic_ssd", overrides={"train.epochs": 2}, output_dir="runs/try")
    run["run_dir"], run["metrics"]          # the run folder; its last validation (dict, see below)
    results = detect.evaluate(run["run_dir"] / "best.pt", split="val")

`overrides` are the `--set` keys, as a mapping (values as Python objects) or as "key=value" strings.
`metrics` is the last `eval` record of the run's metrics.jsonl (epoch, step, map, and per metric its
mAP and per-class AP) or None when the run evaluated nothing; `evaluate` returns the dict `detect eval
--json` writes. Errors a user can cause raise detect.errors.DetectError with the CLI's one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from detect.config import Config, load_config
from detect.errors import DetectError


def override_strings(overrides: Mapping[str, object] | Sequence[str] | str | None) -> list[str]:
    """A mapping {key: value}, "key=value" strings or one such string -> the --set strings (values written
    as JSON, which the config's YAML parsing reads back as the same numbers, lists, booleans and null)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):  # one "key=value", not a sequence of its characters
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in overrides.items()]
    return [str(item) for item in overrides]


def resolve_config(config: str | Path | Config, overrides) -> Config:
    if isinstance(config, Config):
        from detect.config import saved_config_with_overrides

        return saved_config_with_overrides(config, override_strings(overrides))
    return load_config(str(config), override_strings(overrides))


def train(config: str | Path | Config | None = None, overrides=None, output_dir: str | Path | None = None,
          device: str = "auto", resume: str | None = None, *, data: str | Path | None = None,
          model: str | None = None, epochs: int | None = None, time: float | None = None,
          image_size: int | None = None, batch_size: int | None = None, weights: str | None = None) -> dict:
    """Trains like `detect train`, with its options as keywords (`detect.train(data="~/labels", time=3)`:
    `time` in minutes); returns {"run_dir": Path, "metrics": dict | None, "best_map": float | None}."""
    from detect.checkpoints import load_checkpoint
    from detect.engine.run import run_training

    shortcuts = dict(data=data, model=model, epochs=epochs, time_minutes=time, image_size=image_size,
                     batch_size=batch_size, weights=weights)
    if any(value is not None for value in shortcuts.values()) and not isinstance(config, Config):
        from detect.run_config import resolve_run_config

        resolved, lines = resolve_run_config(str(config) if config is not None else None,
                                             overrides=override_strings(overrides), **shortcuts)
        for line in lines:
            print(line)
    elif config is None:
        raise DetectError("detect.train: give data= (your dataset) or a config")
    else:
        resolved = resolve_config(config, overrides)
    config_file = Path(config) if isinstance(config, (str, Path)) and Path(config).suffix in (".yaml", ".yml") else None
    run_dir = Path(run_training(resolved, output_dir=output_dir, device=device, resume=resume,
                                config_file=config_file))
    last = run_dir / "last.pt"
    best_map = load_checkpoint(last).get("best_metric") if last.is_file() else None
    return {"run_dir": run_dir, "metrics": last_evaluation(run_dir / "metrics.jsonl"), "best_map": best_map}


def evaluate(checkpoint: str | Path, config: str | Path | None = None, overrides=None, split: str | None = None,
             metric: str | None = None, device: str = "auto") -> dict:
    """Scores a checkpoint like `detect eval`; returns the results dict (`detect eval --json`)."""
    from detect.evaluation.eval_command import evaluate_checkpoint

    evaluation = evaluate_checkpoint(Path(checkpoint), str(config) if config else None, override_strings(overrides),
                                     split, metric, device)
    return {"checkpoint": str(checkpoint), "config": evaluation.config.name, "split": evaluation.split,
            **evaluation.results}


def last_evaluation(metrics_path: Path) -> dict | None:
    if not metrics_path.is_file():
        return None
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    evaluations = [record for record in records if record.get("type") == "eval"]
    return {key: value for key, value in evaluations[-1].items() if key != "type"} if evaluations else None
