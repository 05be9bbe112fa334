"""`detect eval`: a checkpoint's model, or a detections file, scored on a dataset split.

    evaluation = evaluate_checkpoint(checkpoint, config_name, overrides, split, metric, device)
    evaluation = evaluate_detections(detections, config_name, overrides, split, metric, unknown_class)
        -> Evaluation(config, class_names, split, evaluator, results)

Both score through one evaluator made for the dataset (`evaluator_for_dataset`): COCO data against
the dataset's own annotation file, other data against the ground truth of the split's items.
results: DetectionEvaluator.evaluate()'s dict plus `skipped` (what data.on_error: skip left out,
see detect.data.skip_report.summary) and, for a detections file, `skipped_unknown_class`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from detect.config import Config, load_config
from detect.data.dataset import skipped_in
from detect.data.model_file_config import model_file_config, with_split_lists_of_run
from detect.data.skip_report import SkipReport, dataset_errors, summary
from detect.device import autocast_context
from detect.errors import CheckpointError, DetectError
from detect.evaluation.evaluator import DetectionEvaluator, evaluator_for_dataset, parse_metrics


@dataclass
class Evaluation:
    """What `detect eval` prints and writes: the config scored with, the class names of the results'
    labels, the split, the evaluator (its curves feed --plots) and its results (see above)."""

    config: Config
    class_names: list[str]
    split: str
    evaluator: DetectionEvaluator
    results: dict


def metrics_of(metric: str | None, config: Config) -> tuple[str, ...]:
    """--metric (default: the config's eval.metric) -> metric names; a one-line DetectError if unknown."""
    try:
        return parse_metrics(metric or config.eval.metric)
    except ValueError as error:
        raise DetectError(f"--metric: {error}") from None


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
                        metric: str | None, device: str = "auto", backend: str = "torch",
                        weights: Path | None = None) -> Evaluation:
    """The checkpoint's model on a split. The data config is the checkpoint's own unless
    `config_name` is given; the model always comes from the checkpoint. `backend` runs it
    (detect.backends: "auto" picks by the file's suffix): an exported .onnx / .xml / .engine file is
    scored like the checkpoint it came from, with the config its metadata holds. `weights`: a ready
    model's weight file (`<preset>_coco`, detect/backends/ready_models.py).

    Classes travel by name: the data is read with the checkpoint's class list unless `data.classes`
    names others; then the model's labels are mapped to them by name (a subset or another order is
    scored as such), and a class the model does not know is refused."""
    from detect.backends import resolve_backend
    from detect.data.loader import build_dataloader
    from detect.evaluation.evaluate import run_detector
    from detect.export.load import load_model_file

    backend = resolve_backend(checkpoint, backend)
    loaded = load_model_file(checkpoint, backend, device, weights=weights)
    torch_device = loaded.device if backend == "torch" else torch.device("cpu")  # graphs take host inputs
    model, ckpt_config, class_names = loaded.model, loaded.config, loaded.class_names
    if config_name:
        config = load_config(config_name, overrides)
        if config.data.classes is None:
            config = config.model_copy(update={"data": config.data.model_copy(update={"classes": list(class_names)})})
        config = with_split_lists_of_run(config, ckpt_config, checkpoint, given=True)
    else:
        config = model_file_config(ckpt_config, overrides, checkpoint, class_names)
    label_map = label_map_by_name(class_names, config.data.classes, checkpoint)
    metrics = metrics_of(metric, config)
    split = split or config.data.val_split
    # The model's input pipeline is the checkpoint's (what it was trained on).
    loader = build_dataloader(config.data, ckpt_config.input, config.augment, split, train=False,
                              batch_size=config.eval.batch_size)
    evaluator = evaluator_for_dataset(loader.dataset.raw, metrics, config.eval.iou_thresh, config.eval.coco_backend)
    autocast = lambda: autocast_context(ckpt_config, torch_device)  # noqa: E731
    skipped = SkipReport()
    for detections, ground_truths in run_detector(model, loader, torch_device, autocast, ckpt_config.input.mean,
                                                  ckpt_config.input.std):
        evaluator.process(relabel(detections, label_map), ground_truths)
        skipped.add(skipped_in(ground_truths), split)
    skipped.add(dataset_errors(loader.dataset.raw), split)
    results = {**evaluator.evaluate(), "skipped": summary(skipped.skipped)}
    return Evaluation(config, list(config.data.classes), split, evaluator, results)


def evaluate_detections(detections: Path, config_name: str, overrides: list[str], split: str | None,
                        metric: str | None, unknown_class: str = "raise") -> Evaluation:
    """A COCO results file (see detect.evaluation.detections_file) scored on a split of the config's data.
    Class indices in the file mean the training split's classes, as a model trained on it has them."""
    from detect.data.build import build_dataset, with_class_names
    from detect.evaluation.detections_file import detections_file_predictions

    config = load_config(config_name, overrides)
    metrics = metrics_of(metric, config)
    split = split or config.data.val_split
    dataset = build_dataset(with_class_names(config.data), split, training=False)
    predictions, ground_truths, skipped_unknown = detections_file_predictions(detections, dataset, unknown_class)
    evaluator = evaluator_for_dataset(dataset, metrics, config.eval.iou_thresh, config.eval.coco_backend)
    evaluator.process(predictions, ground_truths)
    results = {**evaluator.evaluate(), "skipped_unknown_class": skipped_unknown,
               "skipped": summary(dataset_errors(dataset))}
    return Evaluation(config, list(dataset.class_names), split, evaluator, results)
