"""The validation during training: the evaluation, its records and log line, a few images drawn."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from detect.engine import distributed as dist_utils
from detect.evaluation.evaluate import evaluate, headline_map, run_detector
from detect.metric_names import VOC_METRICS

if TYPE_CHECKING:
    from detect.engine.session import TrainSession


def run_evaluation(session: TrainSession, val_loader) -> dict:
    """Evaluates the model (its EMA when kept) on the validation loader; records and logs the result,
    draws a few images to TensorBoard. Returns detect.evaluation.evaluate.evaluate's results."""
    config, state = session.config, session.state
    model = session.eval_model()
    dist_utils.broadcast_buffers(model)
    started = time.perf_counter()
    results = evaluate(model, val_loader, session.class_names, session.device, metrics=config.eval.metric,
                       iou_thresh=config.eval.iou_thresh, autocast=session.autocast,
                       mean=config.input.mean, std=config.input.std, coco_backend=config.eval.coco_backend)
    session.skip_report.add(results.get("skipped", []), config.data.val_split, epoch=state.epoch, step=state.step)
    score = headline_map(results)
    seconds = time.perf_counter() - started
    record = {"type": "eval", "epoch": state.epoch, "step": state.step, "map": score, "seconds": seconds}
    for name in VOC_METRICS:
        if name in results:
            record[name] = {"map": results[name]["map"], "ap": results[name]["ap"]}
    if "coco" in results:
        record["coco"] = {k: v for k, v in results["coco"].items() if isinstance(v, (int, float)) or v is None}
    session.logger.record(record)
    session.logger.scalars({"map": score}, state.step, "val")
    shown = f"{score:.4f}" if score is not None else "n/a"
    session.logger.info(f"epoch {state.epoch}: val mAP@{config.eval.iou_thresh:g} ({config.eval.metric}) {shown} "
                        f"on {results['num_images']} images ({seconds:.1f} s)")
    if dist_utils.is_main():
        log_val_images(session, val_loader)
    return results


def log_val_images(session: TrainSession, val_loader, count: int = 4) -> None:
    """A few validation images with their detections drawn, to TensorBoard."""
    if not session.logger.has_tensorboard:
        return
    from detect.engine.visualize import draw_batch_detections

    mean, std = session.config.input.mean, session.config.input.std
    model = session.eval_model()
    loader_iter = iter(val_loader)
    try:
        images, targets = next(loader_iter)
    except StopIteration:
        return
    images, targets = images[:count], targets[:count]
    for detections, _ in run_detector(model, [(images, targets)], session.device, session.autocast, mean, std):
        drawn = draw_batch_detections(images, targets, detections, mean, std, session.class_names)
        for i, image in enumerate(drawn):
            session.logger.image(f"val/detections_{i}", image, session.state.step)
