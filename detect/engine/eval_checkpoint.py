"""`detect eval CKPT`: the checkpoint's model on a split, scored by the DetectionEvaluator."""

from __future__ import annotations

from pathlib import Path

import torch

from detect.config import config_to_dict, load_config, parse_override, validate_config
from detect.data.dataset import skipped_in
from detect.engine.checkpoint import build_model_from_checkpoint
from detect.engine.device import autocast_context, resolve_device
from detect.engine.skip_report import SkipReport, dataset_errors, summary
from detect.errors import CheckpointError, DetectError
from detect.metrics.evaluator import DetectionEvaluator, parse_metrics


def _with_overrides(config, overrides: list[str]):
    raw = config_to_dict(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return validate_config(raw)


def label_map_by_name(model_classes: list[str], data_classes: list[str], checkpoint: Path) -> torch.Tensor | None:
    """int64 [C_model + 1]: the data's label of each model label (0: a class the evaluation leaves
    out), or None when both lists are the same. A data class the model does not know is refused:
    the model could never detect it, and scoring it as missed would be a number without meaning."""
    if list(model_classes) == list(data_classes):
        return None
    unknown = [name for name in data_classes if name not in model_classes]
    if unknown:
        raise CheckpointError(f"{checkpoint}: data.classes names {', '.join(unknown)}, which this checkpoint does not "
                              f"detect (its classes: {', '.join(model_classes)})")
    data_label = {name: label for label, name in enumerate(data_classes, start=1)}
    return torch.tensor([0] + [data_label.get(name, 0) for name in model_classes], dtype=torch.int64)


def relabel(detections: list[dict], label_map: torch.Tensor | None) -> list[dict]:
    """Per-image detections with the model's labels turned into the data's (see label_map_by_name);
    detections of classes the evaluation leaves out are dropped."""
    if label_map is None:
        return detections
    relabelled = []
    for detection in detections:
        labels = label_map[detection["labels"].long()]
        keep = labels > 0
        relabelled.append({**{key: value[keep] for key, value in detection.items()}, "labels": labels[keep]})
    return relabelled


def evaluate_checkpoint(checkpoint: Path, config_name: str | None, overrides: list[str], split: str | None,
                        metric: str | None, device: str = "auto"):
    """Returns (config, class_names, split, metric names, evaluator, results). The data config is the
    checkpoint's own unless `config_name` is given; the model always comes from the checkpoint.

    Classes travel by name: the data is read with the checkpoint's class list unless `data.classes`
    names others; then the model's labels are mapped to them by name (a subset or another order is
    scored as such), and a class the model does not know is refused."""
    from detect.engine.evaluate import run_detector
    from detect.data.loader import build_dataloader

    torch_device = resolve_device(device)
    model, ckpt_config, class_names = build_model_from_checkpoint(checkpoint, torch_device)
    config = load_config(config_name, overrides) if config_name else _with_overrides(ckpt_config, overrides)
    if config.data.classes is None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"classes": list(class_names)})})
    label_map = label_map_by_name(class_names, config.data.classes, checkpoint)
    class_names = list(config.data.classes)
    try:
        metrics = parse_metrics(metric or config.eval.metric)
    except ValueError as error:
        raise DetectError(f"--metric: {error}") from None
    split = split or config.data.val_split
    # The model's input pipeline is the checkpoint's (what it was trained on).
    loader = build_dataloader(config.data, ckpt_config.input, config.augment, split, train=False,
                              batch_size=config.eval.batch_size)
    evaluator = DetectionEvaluator(class_names, metrics=metrics, iou_thresh=config.eval.iou_thresh)
    autocast = lambda: autocast_context(ckpt_config, torch_device)  # noqa: E731
    input_cfg = ckpt_config.input
    skipped = SkipReport()
    for detections, ground_truths in run_detector(model, loader, torch_device, autocast, input_cfg.mean, input_cfg.std):
        evaluator.process(relabel(detections, label_map), ground_truths)
        skipped.add(skipped_in(ground_truths), split)
    skipped.add(dataset_errors(loader.dataset.raw), split)
    return config, class_names, split, metrics, evaluator, {**evaluator.evaluate(), "skipped": summary(skipped.skipped)}
