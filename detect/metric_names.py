"""The metrics `detect eval` and validation compute, by name: the one list every room reads (the config's
`eval.metric` choices, the evaluator, the tables, the headline number that picks best.pt).

    METRICS["voc07"]      Metric(name, voc, eleven_point): VOC07 11-point AP at eval.iou_thresh
    VOC_METRICS           the VOC-style names, in order: voc07, voc12
    HEADLINE_ORDER        which result is the one number of a run, first found first
    MetricName            the config's Literal: these names and "all"

A new metric is one entry here and its computation in detect/evaluation/evaluator.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    voc: bool  # a per-class AP at one IoU threshold, from the same precision-recall curves
    eleven_point: bool = False  # VOC07's 11-point interpolation (else every point, VOC12)


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("voc07", voc=True, eleven_point=True),
    Metric("voc12", voc=True),
    Metric("coco", voc=False),
)}
VOC_METRICS = tuple(name for name, metric in METRICS.items() if metric.voc)
HEADLINE_ORDER = (*VOC_METRICS, "coco")  # best.pt: VOC07 mAP, else VOC12, else COCO AP50
MetricName = Literal[(*METRICS, "all")]
