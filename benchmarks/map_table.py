"""The benchmark behind tools/eval_map.py: accuracy and speed of several detectors on one split.

One row per detector (a checkpoint, or a torchvision model wrapped to our contract), each measured
the same way on the same images:
    mAP            VOC07 (11-point) and VOC12 (all-point) at eval.iou_thresh, COCO AP and AP50
                   (pycocotools), from the end-to-end pass (detect.evaluation.evaluate.run_detector)
    end to end     images/s from creating the loader's iterator to the last batch's detections on the
                   host: reading and decoding images, the eval transforms, collate, host-to-device copy,
                   normalization on the device (uint8 batches), forward, postprocess (loader workers
                   as data.num_workers; their start is included)
    model only     images/s of forward + postprocess on batches prepared beforehand (at most
                   `model_images` images), each batch copied to the device and normalized there
                   (detect.data.normalize) before its clock starts; CUDA-synchronised before and after
    latency        p50 / p95 milliseconds of forward + postprocess at batch 1 (at most
                   `latency_images` images), after `warmup` untimed calls
    peak memory    torch.cuda.max_memory_allocated over the model-only and end-to-end passes (MiB);
                   None on CPU
Every row runs under the same autocast: the data config's train.amp / amp_dtype (bf16 on CUDA by
default, fp32 on CPU); `--set train.amp=false` measures fp32 on CUDA.
Each checkpoint sees its own input pipeline (the one it was trained with); torchvision rows see the
data config's (benchmarks/torchvision_adapter.py switches their own resize and normalization off).
Results are a list of row dicts (ROW_KEYS); `format_table` makes the markdown.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from benchmarks.peers import build_torchvision_faster_rcnn
from benchmarks.torchvision_adapter import TorchvisionAdapter
from benchmarks.zoo import build_named_detector, torchvision_detection_names
from detect.config import Config, InputConfig, load_config
from detect.data.normalize import batch_to_device
from detect.detections.predict import predict_batch
from detect.device import autocast_context, resolve_device, synchronize
from detect.errors import CheckpointError, ConfigError, DetectError
from detect.evaluation.evaluator import DetectionEvaluator

METRICS = ("voc07", "voc12", "coco")
ROW_KEYS = ("name", "kind", "source", "backend", "precision", "num_images", "num_params", "voc07_map", "voc12_map",
            "coco_ap", "coco_ap50", "images_per_s_end_to_end", "images_per_s_model", "latency_ms_p50",
            "latency_ms_p95", "peak_gpu_mib", "voc07_ap", "voc12_ap")


@dataclass
class Candidate:
    """One row to measure. `build(device)` -> (model in eval mode on device, its InputConfig, class names).
    `backend` runs it (detect.backends); one other than torch takes its inputs on the host (CPU)."""

    name: str
    kind: str  # "checkpoint" or "torchvision"
    source: str
    build: Callable[[torch.device], tuple[nn.Module, InputConfig, list[str]]]
    backend: str = "torch"
    precision: str = "fp32"


# ---------------------------------------------------------------------------------------------------
# What to run


def checkpoint_candidate(path: str | Path, backend: str = "auto") -> Candidate:
    """A model file's row: a checkpoint run by `backend` (torch; onnxruntime or openvino export it first,
    in float), or an exported file (.onnx, .xml, .engine: fp32 or INT8) run by its own backend."""
    from detect.backends import is_exported_file, resolve_backend
    from detect.export.load import load_model_file

    path = Path(path)
    if not path.is_file():  # checked before any row runs, so a typo does not waste the others' time
        raise CheckpointError(f"{path}: model file not found")
    backend = resolve_backend(path, "auto" if is_exported_file(path) else backend)

    def build(device):
        loaded = load_model_file(path, backend, device if backend == "torch" else "auto")
        return loaded.model, loaded.config.input, loaded.class_names

    precision = "fp32"
    if is_exported_file(path):
        # Loaded here for its metadata, dropped, and loaded again by the row: an exported OpenVINO model kept
        # in `build` from here to the end of the run made the test process die of a segmentation fault in a
        # later test (the cause is not found).
        precision = getattr(load_model_file(path, backend, "auto").model, "metadata", {}).get("precision", "fp32")
    return Candidate(f"{path} ({backend}, {precision})", "checkpoint", str(path), build, backend, precision)


def torchvision_candidate(spec: str, data_config: Config, class_names: Sequence[str]) -> Candidate:
    """`NAME` (random weights) or `NAME=PATH` (a local state dict). NAME is a torchvision detection
    builder (fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn, ssd300_vgg16, ...) or `peer`:
    torchvision's FasterRCNN on our backbone (benchmarks.peers), with the data config's model
    settings, or, given PATH, a detect checkpoint trained with the peer (its own config)."""

    name, _, path = spec.partition("=")
    name, path = name.strip(), path.strip() or None
    if path is not None and not Path(path).is_file():
        raise CheckpointError(f"{path}: weights for --torchvision {name} not found")
    if name == "peer":
        build_on_cpu = lambda: _build_peer(path, data_config, class_names)  # noqa: E731
    elif name in torchvision_detection_names():
        def build_on_cpu():
            model = build_named_detector(name, len(class_names), data_config.input.mean,
                                         data_config.input.std, path)
            return model, data_config.input, list(class_names)
    else:
        names = ", ".join(["peer"] + torchvision_detection_names())
        raise ConfigError(f"--torchvision {name}: not a torchvision detection model; choose from {names}")

    def build(device):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights: the same on every run (the caller's RNG untouched)
            model, input_cfg, names = build_on_cpu()
        return model.to(device).eval(), input_cfg, names

    label = f"torchvision {name}" + (f" ({Path(path).name})" if path else " (random weights)")
    return Candidate(label, "torchvision", spec, build)


def _build_peer(path, data_config: Config, class_names):
    from detect.checkpoints import check_finite_weights, config_from_checkpoint, load_checkpoint

    config, state = data_config, None
    if path is not None:
        state = load_checkpoint(path)
        check_finite_weights(state, path)
        config = config_from_checkpoint(state, path)
        class_names = list(state["class_names"])
    model_cfg = config.model.model_copy(update={"pretrained": "none"})  # never fetch backbone weights here
    model = TorchvisionAdapter(build_torchvision_faster_rcnn(model_cfg, config.input, len(class_names)),
                               len(class_names))
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{path}: weights do not fit torchvision's FasterRCNN peer "
                                  f"({str(error).splitlines()[0]})") from None
    return model, config.input, list(class_names)


def resolve_data_config(config_name: str | None, overrides: Sequence[str], checkpoints: Sequence[str | Path]) -> Config:
    """`--config` with `--set` applied, else the first checkpoint's own config with them; either reads the
    split lists of the first checkpoint's run when its validation part was drawn (data.val_fraction)."""
    from detect.backends import is_exported_file
    from detect.checkpoints import config_from_checkpoint, load_checkpoint
    from detect.data.model_file_config import model_file_config, with_split_lists_of_run
    from detect.export.load import load_model_file

    if not checkpoints:
        if config_name:
            return load_config(config_name, list(overrides))
        raise DetectError("eval_map: give --config (the data to run on) when no checkpoint is given")
    first = Path(checkpoints[0])
    if is_exported_file(first):
        saved = load_model_file(first, "auto", "auto").config  # the config an export keeps in its metadata
    else:
        saved = config_from_checkpoint(load_checkpoint(first), first)
    if not config_name:
        return model_file_config(saved, overrides, first)
    # A run that drew its validation part is measured on that part (the lists in its folder).
    return with_split_lists_of_run(load_config(config_name, list(overrides)), saved, first, given=True)


# ---------------------------------------------------------------------------------------------------
# Measuring one row


def _to_device(batch, device: torch.device, input_cfg: InputConfig):
    """A loader batch -> (images float32 normalized, image_sizes, scales), all on `device`."""
    images, targets = batch
    return batch_to_device(images, targets, device, input_cfg.mean, input_cfg.std)


def _timed_detect(model, device_batch, device, autocast) -> float:
    """Seconds of one forward + postprocess (detect.detections.predict.predict_batch), the device
    synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    predict_batch(model, *device_batch, autocast)
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def model_only_images_per_s(model, batches: list, device, autocast, input_cfg: InputConfig) -> float:
    seconds = 0.0
    for batch in batches:
        seconds += _timed_detect(model, _to_device(batch, device, input_cfg), device, autocast)
    return sum(len(targets) for _, targets in batches) / seconds


@torch.no_grad()
def batch1_latencies_ms(model, items: list, collate, device, autocast, warmup: int,
                        input_cfg: InputConfig) -> np.ndarray:
    """Milliseconds per image at batch 1 over `items` (transformed dataset items)."""
    batches = [_to_device(collate([item]), device, input_cfg) for item in items]
    for _ in range(warmup):
        predict_batch(model, *batches[0], autocast)
    return np.array([1000.0 * _timed_detect(model, batch, device, autocast) for batch in batches])


def end_to_end(model, loader, class_names, device, autocast, iou_thresh: float,
               input_cfg: InputConfig, coco_backend: str = "numpy") -> tuple[float, dict]:
    """(images/s over the whole loader, the evaluator's results over the same pass)."""
    from detect.evaluation.evaluate import run_detector

    collected = []
    start = time.perf_counter()
    for detections, ground_truths in run_detector(model, loader, device, autocast, input_cfg.mean, input_cfg.std):
        collected.append((detections, ground_truths))  # scored after the clock stops
    seconds = time.perf_counter() - start
    evaluator = DetectionEvaluator(class_names, metrics=METRICS, iou_thresh=iou_thresh, coco_backend=coco_backend)
    for detections, ground_truths in collected:
        evaluator.process(detections, ground_truths)
    num_images = sum(len(detections) for detections, _ in collected)
    return num_images / seconds, evaluator.evaluate()


def measure(candidate: Candidate, data_config: Config, raw_dataset, split: str, device: torch.device,
            batch_size: int, model_images: int = 64, latency_images: int = 32, warmup: int = 2) -> dict:
    """One row (ROW_KEYS) for `candidate` on `raw_dataset` (see the module docstring)."""
    from detect.data.loader import build_dataloader

    if candidate.backend != "torch":
        device = torch.device("cpu")  # an exported graph takes host inputs; its runtime picks its own device
    model, input_cfg, class_names = candidate.build(device)
    data_classes = list(getattr(raw_dataset, "class_names", None) or class_names)
    if list(class_names) != data_classes:
        raise DetectError(f"{candidate.source}: its classes {list(class_names)} differ from the data's {data_classes} "
                          f"(split '{split}' of {data_config.data.root})")
    autocast = lambda: autocast_context(data_config, device)  # noqa: E731
    loader = build_dataloader(data_config.data, input_cfg, data_config.augment, split, train=False,
                              batch_size=batch_size, raw_dataset=raw_dataset)
    dataset, collate = loader.dataset, loader.collate_fn
    first = [dataset[i] for i in range(min(len(dataset), max(model_images, latency_images)))]
    if not first:
        raise DetectError(f"split '{split}' of {data_config.data.root}: no images to run on")
    batches = [collate(first[i:i + batch_size]) for i in range(0, min(len(first), model_images), batch_size)]
    with torch.no_grad():  # untimed warm-up at the benchmark's batch size (allocator, cudnn, lazy init)
        for _ in range(warmup):
            predict_batch(model, *_to_device(batches[0], device, input_cfg), autocast)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model_ips = model_only_images_per_s(model, batches, device, autocast, input_cfg)
    e2e_ips, results = end_to_end(model, loader, class_names, device, autocast, data_config.eval.iou_thresh,
                                  input_cfg, data_config.eval.coco_backend)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    latencies = batch1_latencies_ms(model, first[:latency_images], collate, device, autocast, warmup, input_cfg)
    row = {
        "name": candidate.name, "kind": candidate.kind, "source": candidate.source, "backend": candidate.backend,
        "precision": candidate.precision,
        "num_images": results["num_images"], "num_params": sum(p.numel() for p in model.parameters()),
        "voc07_map": results["voc07"]["map"], "voc12_map": results["voc12"]["map"],
        "coco_ap": results["coco"]["AP"], "coco_ap50": results["coco"]["AP50"],
        "images_per_s_end_to_end": e2e_ips, "images_per_s_model": model_ips,
        "latency_ms_p50": float(np.percentile(latencies, 50)), "latency_ms_p95": float(np.percentile(latencies, 95)),
        "peak_gpu_mib": peak, "voc07_ap": results["voc07"]["ap"], "voc12_ap": results["voc12"]["ap"],
    }
    del model, loader
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


# ---------------------------------------------------------------------------------------------------
# The whole table


def run_benchmark(checkpoints: Sequence[str | Path], config_name: str | None = None, overrides: Sequence[str] = (),
                  split: str | None = None, device: str = "auto", batch_size: int | None = None,
                  torchvision: Sequence[str] = (), max_images: int | None = None, model_images: int = 64,
                  latency_images: int = 32, warmup: int = 2, progress: Callable[[str], None] | None = None,
                  backends: Sequence[str] = ("torch",)) -> dict:
    """Measure every checkpoint (once per backend of `backends`; an exported file on its own backend),
    then every torchvision spec, on one split -> the report dict: {config, split, device, batch_size,
    precision, num_images, rows: [row dict (ROW_KEYS)], torch}."""
    from detect.backends import is_exported_file
    from detect.data.build import build_dataset

    torch_device = resolve_device(device)
    candidates = [checkpoint_candidate(path, backend)  # every path checked up front
                  for path in checkpoints for backend in (["auto"] if is_exported_file(path) else backends)]
    data_config = resolve_data_config(config_name, overrides, checkpoints)
    split = split or data_config.data.val_split
    raw_dataset = build_dataset(data_config.data, split, training=False)
    class_names = list(raw_dataset.class_names)
    if max_images is not None and max_images < len(raw_dataset):
        subset = Subset(raw_dataset, range(max_images))
        subset.class_names = class_names
        raw_dataset = subset
    candidates += [torchvision_candidate(spec, data_config, class_names) for spec in torchvision]
    if not candidates:
        raise DetectError("eval_map: nothing to measure (give checkpoints and/or --torchvision NAME)")
    batch_size = batch_size or data_config.eval.batch_size
    rows = []
    for candidate in candidates:
        if progress is not None:
            progress(f"measuring {candidate.name} ...")
        rows.append(measure(candidate, data_config, raw_dataset, split, torch_device, batch_size,
                            model_images, latency_images, warmup))
    amp = torch_device.type == "cuda" and data_config.train.amp
    return {
        "config": data_config.name, "data_root": data_config.data.root, "split": split,
        "num_images": len(raw_dataset), "batch_size": batch_size, "device": _device_name(torch_device),
        "precision": data_config.train.amp_dtype if amp else "fp32", "torch": torch.__version__,
        "model_images": model_images, "latency_images": latency_images, "rows": rows,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _number(value, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


TABLE_COLUMNS = (
    ("model", lambda r: r["name"]), ("VOC07 mAP", lambda r: _percent(r["voc07_map"])),
    ("VOC12 mAP", lambda r: _percent(r["voc12_map"])), ("COCO AP", lambda r: _percent(r["coco_ap"])),
    ("AP50", lambda r: _percent(r["coco_ap50"])), ("img/s end-to-end", lambda r: _number(r["images_per_s_end_to_end"])),
    ("img/s model", lambda r: _number(r["images_per_s_model"])),
    ("p50 ms (b1)", lambda r: _number(r["latency_ms_p50"])),
    ("p95 ms (b1)", lambda r: _number(r["latency_ms_p95"])), ("peak GPU MiB", lambda r: _number(r["peak_gpu_mib"], 0)),
)
FIRST_ROW_RATIO = "img/s model vs row 1"  # each row's model-only images/s over the first row's


def format_table(report: dict) -> str:
    """The report as a markdown table, one row per model, under a line naming the data and device."""
    header = [name for name, _ in TABLE_COLUMNS] + [FIRST_ROW_RATIO]
    first = report["rows"][0]["images_per_s_model"] if report["rows"] else None
    cells = [[cell(row) for _, cell in TABLE_COLUMNS] + [f"{row['images_per_s_model'] / first:.2f}x" if first else "-"]
             for row in report["rows"]]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [f"{report['config']} split '{report['split']}': {report['num_images']} images, batch "
             f"{report['batch_size']}, {report['device']}, {report['precision']}, torch {report['torch']}", ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)
