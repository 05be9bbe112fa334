"""`detect eval CKPT`: the checkpoint's model on a split, scored by the DetectionEvaluator."""

from __future__ import annotations

from pathlib import Path

from detect.config import config_to_dict, load_config, parse_override, validate_config
from detect.engine.checkpoint import build_model_from_checkpoint
from detect.engine.device import autocast_context, resolve_device
from detect.errors import DetectError
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


def evaluate_checkpoint(checkpoint: Path, config_name: str | None, overrides: list[str], split: str | None,
                        metric: str | None, device: str = "auto"):
    """Returns (config, class_names, split, metric names, evaluator, results). The data config is the
    checkpoint's own unless `config_name` is given; the model always comes from the checkpoint."""
    from detect.engine.evaluate import run_detector
    from detect.data.loader import build_dataloader

    torch_device = resolve_device(device)
    model, ckpt_config, class_names = build_model_from_checkpoint(checkpoint, torch_device)
    config = load_config(config_name, overrides) if config_name else _with_overrides(ckpt_config, overrides)
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
    for detections, ground_truths in run_detector(model, loader, torch_device, autocast, input_cfg.mean, input_cfg.std):
        evaluator.process(detections, ground_truths)
    return config, class_names, split, metrics, evaluator, evaluator.evaluate()
