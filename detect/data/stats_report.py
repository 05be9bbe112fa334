"""The text and plots of `detect data stats`: a split's classes and box sizes at the input size
(detect/data/stats.py), and how its boxes fit the config's anchors or default boxes
(detect/models/anchor_fit.py: `fit` below is its AnchorFit, for the boxes that are not crowd regions).

    format_stats(boxes, fit, config_name) -> str (markdown table and lines; a warning line below 90 %, or for
        a class below 50 %)
    fit_warning(boxes, fit) -> str | None
    plot_stats(boxes, fit, out_dir) -> [sizes_<split>.png, best_iou_<split>.png]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detect.data.stats import SIZE_NAMES, SplitBoxes, aspect_ratios, box_areas, size_buckets
from detect.tables import markdown_table, pyplot, safe_file_name

FIT_WARNING_SHARE = 0.9  # below this share of boxes reaching the matching IoU, a warning
CLASS_WARNING_SHARE = 0.5  # and for a class below this share, even when the split as a whole is above
SCALE_MISS = 1.25  # a missed box this much smaller or larger (in sqrt(area)) than its best reference box


def format_stats(boxes: SplitBoxes, fit, config_name: str) -> str:
    matched = ~boxes.crowd
    sides = np.sqrt(box_areas(boxes.boxes))
    buckets = size_buckets(boxes.boxes)
    fit_labels = boxes.labels[matched]
    rows = [("class", "images", "boxes", *SIZE_NAMES, "median side (px)", f"fit IoU>={fit.match_iou:g} (%)")]
    for label, name in enumerate(boxes.class_names, start=1):
        mine = boxes.labels == label
        rows.append((name, str(boxes.images_per_class[label - 1]), str(int(mine.sum())),
                     *(str(int((buckets[mine] == b).sum())) for b in range(3)), _median(sides[mine]),
                     _percent(fit.reached[fit_labels == label])))
    rows.append(("**all**", str(boxes.num_images), str(len(boxes.labels)),
                 *(str(int((buckets == b).sum())) for b in range(3)), _median(sides), _percent(fit.reached)))
    lines = [f"split {boxes.split}: {boxes.num_images} images, {len(boxes.labels)} boxes"
             + (f" ({int(boxes.crowd.sum())} crowd regions, left out of the fit)" if boxes.crowd.any() else "")
             + f"; sizes at the input of {config_name}", *markdown_table(rows)]
    if len(sides):
        ratios = aspect_ratios(boxes.boxes)
        lines.append(f"box side sqrt(w*h) in input pixels: 10 % {_quantile(sides, 0.1)}, median {_median(sides)}, "
                     f"90 % {_quantile(sides, 0.9)}; height/width: 10 % {np.quantile(ratios, 0.1):.2f}, median "
                     f"{np.median(ratios):.2f}, 90 % {np.quantile(ratios, 0.9):.2f}")
    by_size = ", ".join(f"{name} {_percent(fit.reached[buckets[matched] == b])} %" for b, name in enumerate(SIZE_NAMES))
    looser = (f"; at IoU 0.5: {_percent(fit.best_iou >= 0.5)} %" if fit.match_iou > 0.5 else "")
    lines.append(f"anchor fit: {fit.kind} reach IoU >= {fit.match_iou:g} for {_percent(fit.reached)} % of the boxes "
                 f"({by_size}{looser})")
    smaller, larger, other = _misses(fit)
    if smaller + larger + other:
        lines.append(f"  of the {smaller + larger + other} boxes missed: {smaller} smaller than their best match, "
                     f"{larger} larger, {other} of about its size (another shape or between two)")
    warning = fit_warning(boxes, fit)
    if warning:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def fit_warning(boxes: SplitBoxes, fit) -> str | None:
    """The warning when fewer than 90 % of the boxes reach the matching IoU (which classes and sizes
    miss, and the keys to change), or when a class has under 50 % (which, and the keys)."""
    if len(fit.best_iou) == 0:
        return None
    matched = ~boxes.crowd
    labels, buckets = boxes.labels[matched], size_buckets(boxes.boxes[matched])
    worst_classes = sorted(((fit.reached[labels == label].mean(), name)
                            for label, name in enumerate(boxes.class_names, start=1) if (labels == label).any()))
    if fit.share >= FIT_WARNING_SHARE:
        # Enough boxes in all, but a class may still be out of reach (small objects among large ones).
        lost = [(share, name) for share, name in worst_classes if share < CLASS_WARNING_SHARE]
        if not lost:
            return None
        return (", ".join(f"{name} ({share:.0%})" for share, name in lost) + f": under {CLASS_WARNING_SHARE:.0%} of "
                f"{'its' if len(lost) == 1 else 'their'} boxes reach IoU {fit.match_iou:g} with one of the {fit.kind} "
                f"in '{boxes.split}'; change {fit.keys}")
    worst_sizes = sorted((fit.reached[buckets == b].mean(), name) for b, name in enumerate(SIZE_NAMES)
                         if (buckets == b).any())
    smaller, larger, other = _misses(fit)
    direction = ("smaller than" if smaller >= max(larger, other) else "larger than" if larger >= other
                 else "of about the size of")
    return (f"only {_percent(fit.reached)} % of the boxes of '{boxes.split}' reach IoU {fit.match_iou:g} with one "
            f"of the {fit.kind} (below {FIT_WARNING_SHARE:.0%}); most missed: "
            + ", ".join(f"{name} ({share:.0%})" for share, name in worst_classes[:3])
            + "; sizes: " + ", ".join(f"{name} ({share:.0%})" for share, name in worst_sizes)
            + f". The misses are mostly {direction} the {fit.kind}: change {fit.keys}")


def plot_stats(boxes: SplitBoxes, fit, out_dir: str | Path) -> list[Path]:
    """sizes_<split>.png (a histogram of box sides per class) and best_iou_<split>.png (each box's best IoU
    with a reference box, the matching IoU marked)."""
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = safe_file_name(boxes.split)
    sides = np.sqrt(box_areas(boxes.boxes))
    bins = np.geomspace(max(1.0, float(sides.min()) if len(sides) else 1.0), max(2.0, float(sides.max(initial=2))), 30)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, class_name in enumerate(boxes.class_names, start=1):
        axes.hist(sides[boxes.labels == label], bins=bins, histtype="step", label=class_name)
    axes.set_xscale("log")
    axes.set(xlabel="box side sqrt(w*h), input pixels", ylabel="boxes", title=f"box sizes: {boxes.split}")
    for limit in (32, 96):
        axes.axvline(limit, color="grey", linestyle=":")
    axes.legend(fontsize="small")
    sizes_path = out_dir / f"sizes_{name}.png"
    figure.savefig(sizes_path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.hist(fit.best_iou, bins=np.linspace(0, 1, 41))
    axes.axvline(fit.match_iou, color="red", linestyle="--", label=f"matching IoU {fit.match_iou:g}")
    axes.set(xlabel=f"best IoU with the {fit.kind}", ylabel="boxes",
             title=f"{boxes.split}: {_percent(fit.reached)} % reach {fit.match_iou:g}")
    axes.legend()
    iou_path = out_dir / f"best_iou_{name}.png"
    figure.savefig(iou_path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return [sizes_path, iou_path]


def _misses(fit) -> tuple[int, int, int]:
    missed = ~fit.reached
    smaller = int((missed & (fit.scale_ratio < 1 / SCALE_MISS)).sum())
    larger = int((missed & (fit.scale_ratio > SCALE_MISS)).sum())
    return smaller, larger, int(missed.sum()) - smaller - larger


def _percent(reached: np.ndarray) -> str:
    return f"{100 * reached.mean():.1f}" if len(reached) else "-"


def _median(values: np.ndarray) -> str:
    return f"{np.median(values):.0f}" if len(values) else "-"


def _quantile(values: np.ndarray, q: float) -> str:
    return f"{np.quantile(values, q):.0f}"
