"""PNG plots for `detect eval --plots DIR`: per-class precision-recall curves and a confusion matrix.

matplotlib with the Agg backend (no display needed); imported only when plots are asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from detect.evaluation.voc import ClassCurve, average_precision
from detect.tables import pyplot, safe_file_name


def plot_pr_curves(curves: Sequence[ClassCurve], class_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Writes `pr_<class>.png` for each class and `pr_curves.png` with all classes; returns the paths."""
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    overview, overview_axes = plt.subplots(figsize=(7, 6))
    for curve, name in zip(curves, class_names):
        label = _curve_label(curve, name)
        figure, axes = plt.subplots(figsize=(5, 4.5))
        for target in (axes, overview_axes):
            # The curve starts at recall 0, precision 1 (before the first detection).
            target.plot(np.concatenate([[0.0], curve.recall]), np.concatenate([[1.0], curve.precision]), label=label)
        _style(axes, f"precision-recall: {name}")
        axes.legend(loc="lower left")
        path = out_dir / f"pr_{safe_file_name(name)}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    _style(overview_axes, "precision-recall, all classes")
    overview_axes.legend(fontsize=7, loc="lower left", ncol=2)
    path = out_dir / "pr_curves.png"
    overview.savefig(path, dpi=100)
    plt.close(overview)
    return [path] + written


def _curve_label(curve: ClassCurve, name: str) -> str:
    if curve.num_gt == 0:
        return f"{name} (no gt)"
    return f"{name} AP {100 * average_precision(curve.precision, curve.recall):.1f}"


def _style(axes, title: str) -> None:
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title)
    axes.grid(alpha=0.3)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, score_threshold: float | None = None
) -> Path:
    """Writes the confusion matrix (rows true, columns predicted, index 0 background) as a PNG.

    Each row is normalized to sum 1 for the colours; cells show the counts."""
    plt = pyplot()
    names = ["background", *class_names]
    size = len(names)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
    side = max(5.0, 0.45 * size + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    axes.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(size), names, rotation=90, fontsize=8)
    axes.set_yticks(range(size), names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    scores = f", scores >= {score_threshold:g}" if score_threshold is not None else ""
    axes.set_title(f"confusion matrix (counts; colour: row share{scores})")
    if size <= 30:
        for row in range(size):
            for column in range(size):
                if matrix[row, column]:
                    colour = "white" if normalized[row, column] > 0.5 else "black"
                    axes.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
