"""`detect data check`: read every image and annotation of a split, summarise, list every problem.

The datasets are built with `on_error: skip` whatever the config says, so one bad file does not hide
the next: every problem is collected, and the caller exits non-zero when any is an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from detect.config import DataConfig
from detect.data.dataset import DetectionDataset
from detect.data.problems import Problem
from detect.errors import DataError


@dataclass
class SplitReport:
    split: str
    class_names: list[str] = field(default_factory=list)
    num_images: int = 0
    num_unreadable: int = 0
    objects_per_class: Counter = field(default_factory=Counter)
    num_difficult: int = 0
    num_crowd: int = 0
    image_sizes: Counter = field(default_factory=Counter)  # (w, h) -> count
    boxes_per_image: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def num_errors(self) -> int:
        return sum(problem.severity == "error" for problem in self.problems)


def training_class_names(data_cfg: DataConfig) -> DataConfig:
    """`data_cfg` with the class list training would use (build.with_class_names): every split is
    checked against the training split's classes, as training reads them, so that a class only the
    validation split has is the same error here as there. Where the training split cannot give its
    names, `data_cfg` as it is (its own scan reports why)."""
    from detect.data.build import with_class_names

    try:
        return with_class_names(data_cfg.model_copy(update={"on_error": "skip"})).model_copy(
            update={"on_error": data_cfg.on_error})
    except DataError:
        return data_cfg


def check_split(data_cfg: DataConfig, split: str) -> SplitReport:
    """Builds `split` with on_error=skip, reads every sample, returns what it found."""
    from detect.data.build import build_dataset

    dataset = build_dataset(data_cfg.model_copy(update={"on_error": "skip"}), split)
    return scan_dataset(dataset, split)


def scan_dataset(dataset: DetectionDataset, split: str) -> SplitReport:
    report = SplitReport(split=split, class_names=dataset.class_names, num_images=len(dataset))
    for _index, target in dataset.scan():
        if target is None:
            report.num_unreadable += 1
            continue
        height, width = (int(v) for v in target["orig_size"])
        report.image_sizes[(width, height)] += 1
        report.boxes_per_image.append(len(target["labels"]))
        report.objects_per_class.update(dataset.class_names[label - 1] for label in target["labels"].tolist())
        report.num_difficult += int(target["difficult"].sum())
        report.num_crowd += int(target["iscrowd"].sum())
    report.problems = list(dataset.problems)
    if report.num_images == 0:  # training on it would fail; checking it must not pass
        report.problems.append(Problem(dataset.source, f"split '{split}' has no images", "error", "empty_split"))
    no_objects = dataset.no_objects_error(split)
    if no_objects is not None:
        message = str(no_objects).removeprefix(f"{dataset.source}: ")
        report.problems.append(Problem(dataset.source, message, "error", "no_objects"))
    return report


def format_report(report: SplitReport) -> str:
    lines = [f"split {report.split}: {report.num_images} images ({report.num_unreadable} unreadable)"]
    total = sum(report.objects_per_class.values())
    lines.append(f"  objects: {total} ({report.num_difficult} difficult, {report.num_crowd} crowd)")
    for name in report.class_names:
        lines.append(f"    {name:<20} {report.objects_per_class.get(name, 0)}")
    if report.boxes_per_image:
        counts = np.array(report.boxes_per_image)
        lines.append(
            f"  boxes per image: min {counts.min()}, mean {counts.mean():.1f}, max {counts.max()}; "
            f"{int((counts == 0).sum())} images without objects"
        )
    if report.image_sizes:
        widths = [w for w, _ in report.image_sizes.elements()]
        heights = [h for _, h in report.image_sizes.elements()]
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.image_sizes.most_common(3))
        lines.append(
            f"  image sizes (w x h): width {min(widths)}..{max(widths)}, height {min(heights)}..{max(heights)}; "
            f"most common {common}"
        )
    counts = Counter((p.severity, p.kind) for p in report.problems)
    summary = ", ".join(f"{n} {kind} ({severity})" for (severity, kind), n in sorted(counts.items()))
    lines.append(f"  problems: {len(report.problems)}" + (f": {summary}" if summary else ""))
    lines.extend(f"  {problem}" for problem in report.problems)
    return "\n".join(lines)
