"""Class-imbalance options measured: the same config trained with and without them, several seeds,
per-class AP and mAP on the validation split, means over the seeds.

    python tools/compare_imbalance.py --out runs/imbalance [--config synthetic_ssd] [--seeds 0 1 2] \
        [--arm plain=] [--arm balanced="data.repeat_factor_threshold=0.9 train.class_weights=auto"] \
        [--set data.root=../shared/data/bccd ...]

Each arm is a name and the --set overrides it adds to the shared ones; each run trains in its own
process (`detect train`, run folder OUT/<arm>_seed<seed>) and the table reads the last evaluation of
its metrics.jsonl. An arm whose run folder already holds a finished run is read, not trained again.
Prints markdown; writes OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

DEFAULT_ARMS = ["plain=", "balanced=data.repeat_factor_threshold=0.9 train.class_weights=auto"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and table.json")
    parser.add_argument("--config", default="synthetic_ssd")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arm", action="append", default=None, metavar="NAME=OVERRIDES",
                        help="an arm: its name and space-separated key=value overrides (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every run")
    return parser.parse_args(argv)


def last_evaluation(run_dir: Path) -> dict | None:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return None
    evaluations = [json.loads(line) for line in metrics.read_text().splitlines() if '"type": "eval"' in line]
    return evaluations[-1] if evaluations else None


def train(run_dir: Path, config: str, overrides: list[str]) -> dict:
    done = last_evaluation(run_dir) if (run_dir / "last.pt").is_file() else None
    if done is None:
        command = [sys.executable, "-m", "detect", "train", "--config", config, "--device", "cpu",
                   "--out", str(run_dir)]
        for override in overrides:
            command += ["--set", override]
        print(" ".join(shlex.quote(part) for part in command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        done = last_evaluation(run_dir)
    return done


def table(results: dict[str, list[dict]]) -> tuple[str, dict]:
    metric = next(name for name in ("voc07", "voc12") if name in next(iter(results.values()))[0])
    classes = list(next(iter(results.values()))[0][metric]["ap"])
    summary = {}
    for arm, evaluations in results.items():
        per_class = {name: [e[metric]["ap"][name] for e in evaluations] for name in classes}
        maps = [e[metric]["map"] for e in evaluations]
        summary[arm] = {"ap": {name: sum(v) / len(v) for name, v in per_class.items()}, "map": sum(maps) / len(maps),
                        "per_seed_map": maps, "per_seed_ap": per_class}
    header = "| arm | " + " | ".join(f"AP {name} (%)" for name in classes) + f" | mAP {metric} (%) | mAP per seed (%) |"
    lines = [header, "|" + "---|" * (len(classes) + 3)]
    for arm, numbers in summary.items():
        seeds = ", ".join(f"{100 * value:.1f}" for value in numbers["per_seed_map"])
        lines.append(f"| {arm} | " + " | ".join(f"{100 * numbers['ap'][name]:.1f}" for name in classes)
                     + f" | {100 * numbers['map']:.1f} | {seeds} |")
    return "\n".join(lines), summary


def main(argv=None) -> int:
    args = parse_args(argv)
    arms = {}
    for spec in args.arm or DEFAULT_ARMS:
        name, _, overrides = spec.partition("=")
        arms[name] = overrides.split()
    results = {name: [] for name in arms}
    for seed in args.seeds:
        for name, overrides in arms.items():
            run_dir = args.out / f"{name}_seed{seed}"
            results[name].append(train(run_dir, args.config, [*args.overrides, f"train.seed={seed}", *overrides]))
    text, summary = table(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.json").write_text(json.dumps({"config": args.config, "seeds": args.seeds, "arms": arms,
                                                     "overrides": args.overrides, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
