"""A run's numbers as a table and a picture: results.csv and curves.png in the run folder, rebuilt from
metrics.jsonl after every epoch (so a resumed run's files hold its earlier epochs too), and the figure
of several runs that `detect plot` draws.

    rows = epoch_rows(run_dir / "metrics.jsonl")   one dict per epoch: epoch, step, train_seconds, loss,
                                                    loss_<term>..., lr, map (None where not evaluated),
                                                    eval_seconds
    write_run_files(run_dir) -> [results.csv, curves.png]
    plot_curves({label: rows}, path)               losses, learning rate and mAP against epoch
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from detect.errors import DetectError
from detect.outputs import atomic_output
from detect.tables import pyplot

RESULTS_CSV = "results.csv"
CURVES_PNG = "curves.png"


def epoch_rows(metrics_path: Path) -> list[dict]:
    """The epochs of a metrics.jsonl, in order; the last record of an epoch wins (a run resumed from an
    earlier checkpoint trains some epochs again)."""
    epochs: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for line in Path(metrics_path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: the others still count
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            continue
        if record.get("type") == "epoch":
            epochs[record["epoch"]] = record
        elif record.get("type") == "eval":
            evals[record["epoch"]] = record
    rows = []
    for epoch in sorted(epochs):
        record, evaluation = epochs[epoch], evals.get(epoch, {})
        terms = {key.removeprefix("mean_"): _number(value) for key, value in record.items() if key.startswith("mean_")}
        terms = {key: value for key, value in terms.items() if value is not None}
        rows.append({"epoch": epoch, "step": _number(record.get("step")),
                     "train_seconds": _number(record.get("seconds")),
                     "loss": sum(terms.values()) if terms else None, **terms, "lr": _number(record.get("lr")),
                     "map": _number(evaluation.get("map")), "eval_seconds": _number(evaluation.get("seconds"))})
    return rows


def _number(value) -> float | int | None:
    """A record's value if it is a number; None for anything else an edited or foreign file holds."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_run_files(run_dir: Path) -> list[Path]:
    """results.csv and curves.png of the run folder, from its metrics.jsonl."""
    rows = epoch_rows(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return []
    csv_path = Path(run_dir) / RESULTS_CSV
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_output(csv_path) as partial:
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _cell(row.get(key)) for key in columns})
    return [csv_path, plot_curves({Path(run_dir).name: rows}, Path(run_dir) / CURVES_PNG)]


def plot_curves(runs: dict[str, list[dict]], path: Path) -> Path:
    """One figure: training loss (and its terms, for a single run), learning rate, and validation mAP
    against epoch; one colour per run."""
    plt = pyplot()
    figure, (loss_axes, lr_axes, map_axes) = plt.subplots(1, 3, figsize=(15, 4.2))
    single = len(runs) == 1
    for index, (label, rows) in enumerate(runs.items()):
        colour = f"C{index}"
        epochs = [row["epoch"] for row in rows]
        loss_axes.plot(epochs, [row["loss"] for row in rows], color=colour, marker=".", label=label if not single
                       else "loss")
        if single:
            terms = [key for key in rows[-1] if key.startswith("loss_")]
            for number, term in enumerate(terms, start=1):
                loss_axes.plot(epochs, [row.get(term) for row in rows], color=f"C{number}", linestyle="--",
                               label=term.removeprefix("loss_"))
        lr_axes.plot(epochs, [row.get("lr") for row in rows], color=colour, marker=".", label=label)
        evaluated = [(row["epoch"], row["map"]) for row in rows if row.get("map") is not None]
        if evaluated:
            map_axes.plot(*zip(*evaluated), color=colour, marker="o", label=label)
    loss_axes.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="loss")
    lr_axes.set(title="learning rate (epoch end)", xlabel="epoch", ylabel="lr")
    map_axes.set(title="validation mAP", xlabel="epoch", ylabel="mAP", ylim=(0, 1))
    from matplotlib.ticker import MaxNLocator

    for axes in (loss_axes, lr_axes, map_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.get_legend_handles_labels()[0] and (single is False or axes is loss_axes):
            axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_output(path) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    return path


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    """`detect plot`: the curves of several run folders on one figure."""
    runs = {}
    for run_dir in run_dirs:
        metrics = Path(run_dir) / "metrics.jsonl"
        if not metrics.is_file():
            raise DetectError(f"{run_dir}: no metrics.jsonl here (a run folder of detect train)")
        rows = epoch_rows(metrics)
        if not rows:
            raise DetectError(f"{metrics}: no finished epoch recorded yet")
        label = Path(run_dir).resolve().name
        runs[label if label not in runs else str(run_dir)] = rows
    return plot_curves(runs, out)


def _cell(value):
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else value
