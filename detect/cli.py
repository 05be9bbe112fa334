"""The `detect` command line (typer). Thin: parse arguments, load the config, call into the modules.

Errors a user can cause (DetectError) are printed as one line and exit with code 2; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from detect.cli_choices import CocoBackend, Codec, Metric, Preset, UnknownClass
from detect.data.image_header import DEFAULT_MAX_PIXELS
from detect.errors import DetectError

app = typer.Typer(
    name="detect",
    help="Object detection pipeline: data, training, evaluation (mAP), inference and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help renders as written: "[x, y, w, h]" is text, not markup
)
config_app = typer.Typer(help="Show and check configurations.", no_args_is_help=True, rich_markup_mode=None)
data_app = typer.Typer(help="Make, check and look at datasets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

_state = {"debug": False}

ConfigOption = typer.Option(..., "--config", "-c", help="Config name (e.g. voc_faster_rcnn) or YAML path.")
DataConfigOption = typer.Option(None, "--config", "-c", help="Config name (e.g. voc_faster_rcnn) or YAML path; with "
                                                            "--data, the model's settings (default: ssdlite320's).")
DataOption = typer.Option(None, "--data", "-d", help="Your dataset (a VOC devkit, a labelImg folder, a YOLO data.yaml, "
                                                     "a COCO JSON or folder): its format, splits and classes found "
                                                     "from its files.")
SetOption = typer.Option(None, "--set", help="Override a config key, e.g. --set train.epochs=20 (repeatable).")
ReadyWeightsOption = typer.Option(
    None, "--weights", help="With a ready model (ssdlite320_coco, ...): torchvision's COCO weight file, under its "
                            "published name, read instead of the hub cache (offline).")


# Options of the whole command line: accepted anywhere in it (main moves them in front of the command).
GLOBAL_FLAGS = {"--debug": "--debug", "--quiet": "--quiet", "-q": "--quiet"}


def _show_version(value: bool) -> None:
    if value:
        from detect import __version__

        typer.echo(f"detect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (anywhere on the line)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (anywhere on the line)."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print detect's version and exit."),
) -> None:
    import logging

    from detect import progress

    _state["debug"] = debug
    progress.set_quiet(quiet)
    # Warnings of the modules below (a skipped image, a truncated JPEG read) as one "warning:" line.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")


def _load(config: str, overrides: Optional[List[str]]):
    from detect.config import load_config

    return load_config(config, overrides or [])


def _data_load(config: Optional[str], data: Optional[Path], overrides: Optional[List[str]]):
    """The config of a data command: --config as it is, or with --data the data found there (and
    --config, or the default preset, for the input size and the model's boxes)."""
    if data is None:
        if config is None:
            raise DetectError("give --data PATH (your dataset) or --config NAME")
        return _load(config, overrides)
    from detect.run_config import resolve_run_config

    cfg, lines = resolve_run_config(config, data, overrides=overrides, training=False)
    typer.echo(lines[0], err=True)  # what was found, beside the command's own output
    return cfg


def _renamed(old: str, old_value, new: str, new_value):
    """The value of an option renamed from `old` to `new` (the old spelling works for one more release,
    with a one-line notice); both given is an error."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise DetectError(f"{old} is the old name of {new}; give {new} only")
    typer.echo(f"warning: {old} is deprecated and goes in the next release; use {new}", err=True)
    return old_value


def _output_folder(positional: Optional[Path], out: Optional[Path], command: str) -> Path:
    """The folder a data command writes: -o/--out (a positional OUT still works, with a notice)."""
    folder = _renamed("a positional OUT", positional, "-o/--out", out)
    if folder is None:
        raise DetectError(f"{command}: give the folder to write with -o/--out")
    return folder


def _config_file(config: Optional[str]) -> Optional[Path]:
    """The YAML file a --config names (None for a built-in name): an input no output may replace."""
    return Path(config) if config is not None and Path(config).is_file() else None


# ---------------------------------------------------------------------------------------------------
# detect config ...


@config_app.command("show")
def config_show(
    name: str = typer.Argument(..., help="Config name or YAML path."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Print the resolved configuration (base and overrides applied) as YAML."""
    from detect.config import config_to_yaml

    typer.echo(config_to_yaml(_load(name, overrides)), nl=False)


@config_app.command("list")
def config_list() -> None:
    """List the built-in configurations."""
    from detect.config import builtin_config_names

    for name in builtin_config_names():
        typer.echo(name)


# ---------------------------------------------------------------------------------------------------
# detect data ...


@data_app.command("synth")
def data_synth(
    out_positional: Optional[Path] = typer.Argument(None, hidden=True, metavar="OUT", help="Deprecated: -o/--out."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New or empty folder to write the dataset into (or "
                                                                 "an earlier generation, replaced whole)."),
    format: str = typer.Option("voc", "--format", "-f",
                               help="The dataset format to write."),
    num_images: int = typer.Option(200, "--num-images", "-n", min=1, help="Number of images in all."),
    image_size: int = typer.Option(320, "--image-size", "-s", min=32, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same bytes."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.0, max=0.99, help="Share of images in val."),
    video: bool = typer.Option(False, "--video", help="Instead: video clips of moving shapes with a MOTChallenge "
                                                      "ground truth (clip_K.mp4, clip_K.gt.txt)."),
    clips: int = typer.Option(3, "--clips", min=1, max=100, help="--video: number of clips."),
    frames: int = typer.Option(300, "--frames", min=1, max=10_000, help="--video: frames per clip (at most 10,000: "
                                                                         "400 s)."),
) -> None:
    """Generate a synthetic shapes dataset (VOC, COCO or YOLO layout), the offline default; or video clips
    with a tracking ground truth (--video, 640 x 480 at 25 fps)."""
    from detect.data.synthetic import WRITERS, generate_synthetic

    out = _output_folder(out_positional, out, "detect data synth")
    if format not in WRITERS:
        raise DetectError(f"--format must be one of {', '.join(WRITERS)}, got '{format}'")
    if video:
        from detect.data.synthetic_video import generate_video_clips

        totals = generate_video_clips(out, num_clips=clips, frames=frames, seed=seed)
        typer.echo(f"wrote {totals['clips']} clips ({totals['frames']} frames, {totals['objects']} objects, "
                   f"{totals['boxes']} ground-truth boxes) to {out}")
        return

    summary = generate_synthetic(
        out, format=format, num_images=num_images, image_size=image_size, seed=seed, val_fraction=val_fraction
    )
    typer.echo(
        f"wrote {summary['num_images']} images ({summary['num_train']} train, {summary['num_val']} val) "
        f"with {summary['num_objects']} objects of {len(summary['classes'])} classes to {out} ({format})"
    )


@data_app.command("convert")
def data_convert(
    out_positional: Optional[Path] = typer.Argument(None, hidden=True, metavar="OUT", help="Deprecated: -o/--out."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New (or empty) folder to write the converted "
                                                                 "dataset into."),
    config: Optional[str] = DataConfigOption,
    data: Optional[Path] = DataOption,
    format: Optional[str] = typer.Option(None, "--format", "-f",
                                         help="The dataset format to write."),
    to: Optional[str] = typer.Option(None, "--to", hidden=True,
                                     help="Deprecated: --format."),
    splits: Optional[str] = typer.Option(None, "--splits", help="Comma-separated splits (default: train and val)."),
    copy: bool = typer.Option(False, "--copy", help="Copy the images (default: symbolic links to them)."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Write the config's dataset (any readable format) as VOC, COCO or YOLO, classes and splits kept."""
    from detect.data.convert import convert_dataset

    out = _output_folder(out_positional, out, "detect data convert")
    to = _renamed("--to", to, "--format", format)
    if to is None:
        raise DetectError("detect data convert: give --format (the dataset format to write)")
    cfg = _data_load(config, data, overrides)
    names = [s.strip() for s in splits.split(",") if s.strip()] if splits else list(
        dict.fromkeys([cfg.data.train_split, cfg.data.val_split]))
    summary = convert_dataset(cfg.data, names, out, to, copy)
    parts = ", ".join(f"{split}: {summary['images'][split]} images, {summary['objects'][split]} objects"
                      for split in names)
    typer.echo(f"wrote {out} ({to}; {len(summary['classes'])} classes; {parts})")
    for flag, count in summary["dropped_flags"].items():
        typer.echo(f"note: {count} objects marked {flag} written as ordinary objects ({to} has no {flag} flag)")


@data_app.command("split")
def data_split(
    out_positional: Optional[Path] = typer.Argument(None, hidden=True, metavar="OUT", help="Deprecated: -o/--out."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write train.txt and val.txt into."),
    config: Optional[str] = DataConfigOption,
    data: Optional[Path] = DataOption,
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", min=0.0, max=1.0,
                                                 help="Share of images in val (default: data.val_fraction, else 0.2)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the draw (default: data.split_seed)."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Draw a stratified validation part from the training split; write the two lists of image ids."""
    from detect.data.build import build_split_pool
    from detect.data.splits import LIST_FILES, drawn_keys, split_table, write_split_lists

    out = _output_folder(out_positional, out, "detect data split")

    cfg = _data_load(config, data, overrides)
    fraction = val_fraction if val_fraction is not None else (cfg.data.val_fraction or 0.2)
    if not 0.0 < fraction < 1.0:
        raise DetectError(f"--val-fraction must be between 0 and 1 (both left out), got {fraction}")
    if out.exists() and not out.is_dir():
        raise DetectError(f"detect data split -o {out}: is a file; give a folder for train.txt and val.txt")
    written = [out / name for name in LIST_FILES.values() if (out / name).exists()]
    if written:
        raise DetectError(f"{written[0]}: already exists; choose another folder (lists are never overwritten: a "
                          f"run may be scored on them)")
    data_cfg = cfg.data.model_copy(update={"val_fraction": fraction, "split_lists": None})
    pool = build_split_pool(data_cfg)
    train_keys, val_keys = drawn_keys(pool, fraction, cfg.data.split_seed if seed is None else seed)
    write_split_lists(out, train_keys, val_keys)
    typer.echo(split_table(pool, train_keys, val_keys))
    typer.echo(f"wrote {out / LIST_FILES['train']} and {out / LIST_FILES['val']}; train and evaluate on them with "
               f"--set data.split_lists={out}")


@data_app.command("stats")
def data_stats(
    config: Optional[str] = DataConfigOption,
    data: Optional[Path] = DataOption,
    split: Optional[str] = typer.Option(None, "--split", help="Split to describe (default: train and val splits)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder to write box-size and best-IoU histograms "
                                                               "into (PNG)."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Classes, box sizes at the input size, and how the config's anchors or default boxes reach the boxes."""
    from detect.data.build import build_dataset, with_class_names
    from detect.data.stats import split_boxes
    from detect.data.stats_report import format_stats, plot_stats
    from detect.models.anchor_fit import anchor_fit
    from detect.outputs import writable_folder

    cfg = _data_load(config, data, overrides)
    if plots is not None:  # before the statistics are printed, not after
        writable_folder("--plots", plots)
    data_cfg = with_class_names(cfg.data)
    for name in [split] if split else list(dict.fromkeys([cfg.data.train_split, cfg.data.val_split])):
        boxes = split_boxes(build_dataset(data_cfg, name), cfg.input, name)
        fit = anchor_fit(cfg.model, cfg.input, boxes.boxes_per_image(~boxes.crowd), boxes.input_sizes,
                         len(boxes.class_names))
        typer.echo(format_stats(boxes, fit, cfg.name) + "\n")
        if plots is not None:
            for path in plot_stats(boxes, fit, plots):
                typer.echo(f"wrote {path}")


@data_app.command("check")
def data_check(
    config: Optional[str] = DataConfigOption,
    data: Optional[Path] = DataOption,
    split: Optional[str] = typer.Option(None, "--split", help="Split to scan (default: train and val splits)."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Read every image and annotation of a split; print a summary and every problem (exit 1 on errors)."""
    from detect.data.check import check_split, format_report, training_class_names

    cfg = _data_load(config, data, overrides)
    splits = [split] if split else list(dict.fromkeys([cfg.data.train_split, cfg.data.val_split]))
    data_cfg = training_class_names(cfg.data)
    num_errors = 0
    for name in splits:
        report = check_split(data_cfg, name)
        typer.echo(format_report(report))
        num_errors += report.num_errors
    if num_errors:
        typer.echo(f"{num_errors} error(s) found", err=True)
        raise typer.Exit(1)


@data_app.command("show")
def data_show(
    config: Optional[str] = DataConfigOption,
    data: Optional[Path] = DataOption,
    split: Optional[str] = typer.Option(None, "--split", help="Split to draw from (default: the train split)."),
    num_images: Optional[int] = typer.Option(None, "--num-images", "-n", min=1,
                                             help="Number of samples (default 16)."),
    num: Optional[int] = typer.Option(None, "--num", min=1, hidden=True, help="Deprecated: --num-images."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="Image file to write (PNG)."),
    seed: int = typer.Option(0, "--seed", help="Seed for picking samples and augmenting them."),
    eval_pipeline: bool = typer.Option(False, "--eval", help="Use the eval pipeline (resize only) instead."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Draw augmented samples with their boxes and class names into a grid image."""
    from detect.data.show import show_samples
    from detect.outputs import refuse_overwrite, writable_file

    cfg = _data_load(config, data, overrides)
    refuse_overwrite("--out", [out], [_config_file(config)])
    writable_file("--out", out)
    count = _renamed("--num", num, "--num-images", num_images) or 16
    path = show_samples(cfg, split or cfg.data.train_split, count, out, seed=seed, train=not eval_pipeline)
    typer.echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------
# detect train


@app.command("train")
def train_command(
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", help="Your dataset: a VOC devkit, a folder of images and VOC XML (labelImg), a YOLO "
                                   "data.yaml or its folder, a COCO JSON file or folder, a Roboflow export. Its "
                                   "format, splits and classes are found from its files."),
    model: Optional[Preset] = typer.Option(None, "--model", "-m",
                                        help="A detector preset: detect models says what each is for (default "
                                             "with --data: ssdlite320)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the training images."),
    time_minutes: Optional[float] = typer.Option(
        None, "--time", min=0.1, help="Instead of --epochs: train for this many minutes, the schedule fitted to them; "
                                      "the run ends within them with its best model."),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=32, help="Input size (the shorter side for "
                                                                                "Faster R-CNN)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, help="Images per step."),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="Starting weights: imagenet, coco, none or a FILE (default: the preset's where they "
                                "can be had, else random)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Instead of --model: a config name (e.g. "
                                                                      "voc_faster_rcnn) or YAML path."),
    overrides: Optional[List[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<config>/<timestamp>/)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", hidden=True, help="Deprecated: --out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: Optional[str] = typer.Option(None, "--resume", help="last.pt path, or 'auto': the run folder's last.pt."),
) -> None:
    """Train a detector on your data (--data), or as a config says (--config); under torchrun, on every
    process (DistributedDataParallel)."""
    from detect.engine.run import run_training
    from detect.run_config import resolve_run_config

    out = _renamed("--output-dir", output_dir, "--out", out)
    if data is None and model is None and epochs is None and time_minutes is None and image_size is None \
            and batch_size is None and weights is None:
        if config is None:
            raise DetectError("detect train: give --data PATH (your dataset) or --config NAME")
        cfg = _load(config, overrides)
    else:
        cfg, lines = resolve_run_config(config, data, model, epochs, time_minutes, image_size, batch_size, weights,
                                        overrides)
        for line in lines:
            typer.echo(line)
    run_training(cfg, output_dir=out, device=device, resume=resume, config_file=_config_file(config),
                 started=_state.get("started"))


@app.command("models")
def models_command() -> None:
    """The detector presets of detect train --model, with what each is for and its measured CPU speed."""
    from detect.config.presets import DEFAULT_PRESET, PRESETS

    for name, preset in PRESETS.items():
        default = " (default)" if name == DEFAULT_PRESET else ""
        typer.echo(f"{name}{default}: {preset.what}")
        typer.echo(f"    config {preset.base}; {preset.speed}")


@app.command("plot")
def plot_command(
    runs: List[Path] = typer.Argument(..., help="Run folders (each with its metrics.jsonl)."),
    out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="Image file to write (PNG)."),
) -> None:
    """Draw the loss, learning-rate and mAP curves of one or more runs on one figure."""
    from detect.engine.curves import plot_runs
    from detect.outputs import refuse_overwrite, writable_image

    refuse_overwrite("--out", [out], [run / "metrics.jsonl" for run in runs])
    writable_image("--out", out)
    typer.echo(f"wrote {plot_runs(runs, out)}")


# ---------------------------------------------------------------------------------------------------
# detect eval


@app.command("eval")
def eval_command(
    checkpoint: Optional[Path] = typer.Argument(None, help="A checkpoint (best.pt / last.pt), or a model detect export "
                                                            "wrote (.onnx, .xml, .engine), to run on the split."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Instead of a checkpoint: a COCO results JSON "
                                                                         "(image_id, category_id, bbox xywh, score)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config name or YAML path (default with a "
                                                                      "checkpoint: its own config)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Score on this dataset (any form detect train "
                                                                   "--data reads), not the model's own data."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate on (default: data.val_split)."),
    metric: Optional[Metric] = typer.Option(None, "--metric",
                                         help="The metric (default: eval.metric)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the numbers to this JSON file."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write PR curves and a confusion matrix (PNG) here."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (with a checkpoint)."),
    unknown_class: UnknownClass = typer.Option(
        "raise", "--unknown-class",
        help="With --detections: a detection of a class not in data.classes is an error (raise) or left out and "
             "counted (skip)."),
    coco_backend: Optional[CocoBackend] = typer.Option(
        None, "--coco-backend",
        help="What computes the COCO metric: numpy (default) or pycocotools (the reference; the same numbers, "
             "slower). Sets eval.coco_backend."),
    backend: str = typer.Option("auto", "--backend",
                                help="What runs the model: auto (by its file's suffix) or a backend."),
    weights: Optional[Path] = ReadyWeightsOption,
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Evaluate a checkpoint (or a detections file) on a split; print per-class AP and mAP.

    With --detections, for VOC data image_id is the file stem, category_id the class name or its
    1-based index in data.classes, and bbox [x, y, w, h] in the XML files' own 1-based pixel
    corners (what `detect infer --json` writes for VOC data); for COCO data, the COCO image and
    category ids and COCO boxes.
    """
    import json

    from detect.evaluation.evaluator import format_results

    if (checkpoint is None) == (detections is None):
        raise DetectError("detect eval: give a checkpoint or --detections FILE (one of them)")
    _check_eval_outputs(json_out, plots, [checkpoint, detections, _config_file(config), weights])
    if coco_backend is not None:
        overrides = [*(overrides or []), f"eval.coco_backend={coco_backend}"]
    if data is not None:
        from detect.config.presets import data_overrides
        from detect.data.discover import discover_data

        found = discover_data(data)
        typer.echo(f"data: {data} is {found.what}", err=True)
        overrides = [*data_overrides(found.settings), *(overrides or [])]
    if checkpoint is not None:
        from detect.evaluation.eval_command import evaluate_checkpoint

        evaluation = evaluate_checkpoint(checkpoint, config, overrides or [], split, metric, device, backend,
                                         weights)
        source = str(checkpoint)
    else:
        from detect.evaluation.eval_command import evaluate_detections

        if weights is not None:
            raise DetectError("--weights goes with a ready model (<preset>_coco), not with --detections")

        if config is None and data is None:
            raise DetectError("detect eval --detections needs --data or --config (the dataset to score against)")
        if config is None:
            from detect.config.presets import DEFAULT_PRESET, PRESETS

            config = PRESETS.get(DEFAULT_PRESET).base  # its data settings are all --data's
        evaluation = evaluate_detections(detections, config, overrides or [], split, metric, unknown_class)
        source = str(detections)
    cfg, class_names, split, results = evaluation.config, evaluation.class_names, evaluation.split, evaluation.results
    typer.echo(f"{source} on {cfg.data.format} split '{split}' ({results['num_images']} images)")
    if results["skipped"]["count"]:
        from detect.data.skip_report import describe

        typer.echo(describe(results["skipped"]["problems"], split))
    if results.get("skipped_unknown_class"):
        typer.echo(
            f"skipped {results['skipped_unknown_class']} detections of classes not in data.classes (--unknown-class "
            "skip)")
    typer.echo(format_results(results, class_names))
    if json_out is not None:
        key = "checkpoint" if checkpoint is not None else "detections"
        record = {key: source, "config": cfg.name, "split": split, **results}
        json_out.write_text(json.dumps(record, indent=2))
        typer.echo(f"wrote {json_out}")
    if plots is not None:
        from detect.evaluation.confusion import CONFUSION_SCORE_THRESHOLD, confusion_matrix
        from detect.evaluation.plots import plot_confusion_matrix, plot_pr_curves

        plot_pr_curves(evaluation.evaluator.class_curves(), class_names, plots)
        matrix = confusion_matrix(evaluation.evaluator.voc_inputs(), len(class_names), cfg.eval.iou_thresh)
        plot_confusion_matrix(matrix, class_names, plots / "confusion_matrix.png", CONFUSION_SCORE_THRESHOLD)
        typer.echo(f"wrote plots to {plots}")


def _check_eval_outputs(json_out: Optional[Path], plots: Optional[Path], inputs: List[Optional[Path]]) -> None:
    """Before the evaluation runs: --json and --plots can be written and replace none of the inputs."""
    from detect.outputs import refuse_overwrite, writable_file, writable_folder

    if json_out is not None:
        refuse_overwrite("--json", [json_out], inputs)
        writable_file("--json", json_out)
    if plots is not None:
        refuse_overwrite("--plots", [plots / "pr_curves.png", plots / "confusion_matrix.png"], inputs, given=plots)
        writable_folder("--plots", plots)


# ---------------------------------------------------------------------------------------------------
# detect infer / export


@app.command("infer")
def infer(
    checkpoint: Path = typer.Argument(
        ..., help="Model file: a checkpoint of detect train (.pt), or what detect export wrote (.onnx, OpenVINO .xml, "
                  "TensorRT .engine)."),
    sources: List[str] = typer.Argument(
        ..., help="Image files, folders (recursive), globs (quoted), videos, a camera index, rtsp/http URLs."
    ),
    out: Path = typer.Option(Path("runs/infer"), "--out", "-o", help="Folder for annotated images, videos, JSON."),
    score_threshold: float = typer.Option(
        0.5, "--score-threshold", "-t", min=0.0, max=1.0, help="Keep detections scoring at least this."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Keep only these classes, comma-separated names."),
    json_out: bool = typer.Option(
        False, "--json", help="Also write detections.json and detections_coco.json (images)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Images or video frames per model call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop each video or stream after this "
                                                                               "many frames."),
    backend: str = typer.Option(
        "auto", "--backend",
        help="auto (by the model file's suffix: .pt torch, .onnx onnxruntime, .xml openvino, "
        ".engine tensorrt), or one of them; onnxruntime and openvino given a .pt export it first."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Skip an image whose header declares more pixels (before "
                                                        "decoding it)."),
    codec: Codec = typer.Option("h264", "--codec",
                              help="Video output codec (h264 plays in browsers)."),
    track: bool = typer.Option(False, "--track", help="Videos: follow objects across frames (track ids in the "
                                                      "JSONL and the drawing, a tracks.csv per video)."),
    track_settings: Optional[List[str]] = typer.Option(None, "--track-set", help="A tracker setting, "
                                                       "key=value (track.* in docs/config.md); repeatable."),
    weights: Optional[Path] = ReadyWeightsOption,
    gt: Optional[Path] = typer.Option(None, "--gt", help="With --track and one video: its ground truth "
                                      "(MOTChallenge lines, as detect data synth --video writes them); prints MOTA, "
                                      "IDF1, HOTA and what tracking adds to the time per frame."),
) -> None:
    """Detect objects in images, folders, globs, videos, cameras and streams; write annotated copies."""
    from detect import progress
    from detect.infer import load_detector, run_inference
    from detect.infer.sources import parse_sources
    from detect.infer.tracking import model_threshold, track_config
    from detect.outputs import writable_folder

    _, videos = parse_sources(sources)  # a missing path fails now, before the model loads
    if track_settings and not track:
        raise DetectError("--track-set sets the tracker, which runs with --track only; add --track")
    if track and not videos:
        raise DetectError("--track follows objects across the frames of a video, and the sources hold only "
                          "images; give a video, a camera or a stream, or leave out --track")
    writable_folder("--out", out)
    track_cfg = track_config(track_settings) if track else None
    if gt is not None:
        _check_gt(gt, track, videos)
    # Tracking needs the unsure detections too (ByteTrack): the model runs at track.low_score.
    threshold = model_threshold(score_threshold, track_cfg) if track_cfg is not None else score_threshold
    detector = load_detector(checkpoint, backend, device, weights=weights, score_threshold=threshold,
                             classes=classes, batch_size=batch_size, max_pixels=max_pixels)
    summary = run_inference(detector, sources, out, write_json=json_out, max_frames=max_frames,
                            progress=progress.bars_enabled(),
                            inputs=[checkpoint, *([weights] if weights else [])],
                            tracking=(track_cfg, score_threshold) if track_cfg else None, codec=codec)
    parts = []
    if summary.images or summary.skipped:
        parts.append(f"{summary.images} images" + (f" ({len(summary.skipped)} skipped)" if summary.skipped else ""))
    if summary.videos:
        parts.append(f"{summary.videos} videos ({summary.frames} frames)")
    typer.echo(f"{', '.join(parts)}: {summary.detections} detections in {summary.seconds:.1f} s; results in {out}")
    if gt is not None:
        from detect.track.mot_metrics import format_scores, score_video

        typer.echo(format_scores(score_video(gt, out / f"{videos[0].name}.jsonl"), summary))
    if summary.detections == 0 and (summary.images or summary.frames):
        best = getattr(detector, "best_score", None)
        typer.echo("hint: the model gave no candidates at all" if best is None else
                   f"hint: no detection scored --score-threshold {score_threshold:g} or more; the best score was "
                   f"{best:.3f} (a lower -t shows more; a model trained longer scores higher)")


def _check_gt(gt: Path, track: bool, videos: list) -> None:
    if not track:
        raise DetectError("--gt scores the tracks of a video; add --track")
    if len(videos) != 1:
        raise DetectError(f"--gt is the ground truth of one video; the sources hold {len(videos)}")
    if not gt.is_file():
        raise DetectError(f"--gt {gt}: no such file")
    try:  # before the video runs, not after
        import motmetrics  # noqa: F401
    except ImportError:
        raise DetectError("--gt: scoring tracks needs motmetrics: pip install motmetrics") from None


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by detect train (.pt)."),
    format: str = typer.Option("onnx", "--format", "-f",
                               help="The model format to write (registered in detect/export/)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: next to the checkpoint, with "
                                                                 "the format's suffix)."),
    output: Optional[Path] = typer.Option(None, "--output", hidden=True, help="Deprecated: --out."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Let the batch size vary at run time."),
    opset: int = typer.Option(
        17, "--opset", help="ONNX opset (one outside the supported range is refused, naming it); the written model "
                            "must load in onnxruntime."),
    image_size: Optional[str] = typer.Option(
        None, "--image-size", help="Input H,W (or one side) for keep-ratio configs; default: the padded max size."
    ),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch size traced (fixed unless --dynamic-batch)."),
    int8: bool = typer.Option(False, "--int8", help="Quantize the trunk and heads to INT8 (onnx: onnxruntime's static "
                                                   "QDQ; openvino: NNCF); postprocess and NMS stay float. Prints and "
                                                   "writes beside the model float and INT8 mAP@0.5 and speed."),
    calibration: int = typer.Option(
        300, "--calibration", min=1, help="--int8: training-split images to calibrate on (all, when fewer)."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Export the model with its postprocess (NMS included): ONNX, OpenVINO IR or a TensorRT engine, in
    float or INT8; see docs/export.md for running it. --set reaches the data that --int8 calibrates on."""
    from detect.export import EXPORT_SUFFIXES, EXPORTERS, parse_image_size
    from detect.export.targets import check_export_target
    from detect.outputs import writable_file

    out = _renamed("--output", output, "--out", out)
    exporter = EXPORTERS.get(format)
    suffix = EXPORT_SUFFIXES[format]
    target = out or checkpoint.with_suffix(f".int8{suffix}" if int8 else suffix)
    if int8:
        from detect.export.int8 import check_int8_format

        check_int8_format(format)
    check_export_target(format, target, int8, [checkpoint])
    writable_file("--out", target)
    options = dict(opset=opset, dynamic_batch=dynamic_batch, image_size=parse_image_size(image_size),
                   batch_size=batch_size)
    if int8:
        from detect.evaluation.int8_report import export_int8, format_report

        info = export_int8(format, checkpoint, target, calibration, overrides or [], **options)
        typer.echo(format_report(info["report"]))
    else:
        info = exporter(checkpoint, target, **options)
    typer.echo(f"wrote {target}: {info['summary']}")


# ---------------------------------------------------------------------------------------------------
# detect serve


@app.command("serve")
def serve(
    checkpoint: Path = typer.Argument(..., help="Model file: a checkpoint of detect train (.pt), or what detect export "
                                                "wrote (.onnx, .xml, .engine)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 serves other machines too."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Images from concurrent requests per model call."),
    max_wait_ms: float = typer.Option(
        10.0, "--max-wait-ms", min=0.0, help="How long the first image waits for others."),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="Images that may wait; more are answered 503."),
    max_upload_mb: float = typer.Option(
        20.0, "--max-upload-mb", min=0.001, help="Largest request body, in MB (413 above)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="DETECT_API_KEY", show_envvar=True,
                                          help="Require this key (X-API-Key header) on /v1/* and /metrics."),
    backend: str = typer.Option(
        "auto", "--backend",
        help="auto (by the model file's suffix), torch, onnxruntime or openvino (a .pt exported "
                                  "at start-up, on the CPU), tensorrt."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Largest image, in pixels, read from its header before "
                                                        "decoding (422 above)."),
    max_request_pixels: int = typer.Option(
        2 * DEFAULT_MAX_PIXELS, "--max-request-pixels", min=1, help="Pixels of all images of one request together (422 "
                                                                    "above)."),
    max_held_pixels: int = typer.Option(
        4 * DEFAULT_MAX_PIXELS, "--max-held-pixels", min=1,
        help="Decoded pixels of all requests in flight (503 above)."),
    weights: Optional[Path] = ReadyWeightsOption,
) -> None:
    """Serve the detector over HTTP: JSON API (/v1/detect, /docs), web page (/), Prometheus /metrics."""
    import logging

    from detect.serve.app import ServeSettings
    from detect.serve.server import run_server

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_capacity=max(max_queue, max_batch),
                             max_upload_mb=max_upload_mb, api_key=api_key or None, max_pixels=max_pixels,
                             max_request_pixels=max_request_pixels, max_held_pixels=max_held_pixels)
    run_server(checkpoint, host=host, port=port, device=device, settings=settings, backend=backend, weights=weights)


# ---------------------------------------------------------------------------------------------------


# click's errors, as the installed typer has them (its own copy of click from typer 0.20 on, click before).
CLICK_ERRORS = {cls.__name__: cls for cls in typer.BadParameter.__mro__}


def hoisted_global_flags(args: List[str]) -> List[str]:
    """`args` with --debug and --quiet (-q) moved in front of the command wherever they stand (not past a
    lone `--`), so that `detect infer m.pt a.jpg --quiet` means what `detect --quiet infer ...` does."""
    end = args.index("--") if "--" in args else len(args)
    flags = dict.fromkeys(GLOBAL_FLAGS[arg] for arg in args[:end] if arg in GLOBAL_FLAGS)
    return [*flags, *(arg for arg in args[:end] if arg not in GLOBAL_FLAGS), *args[end:]]


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: runs the typer app, turning user errors into one-line messages."""
    args = hoisted_global_flags(list(sys.argv[1:] if argv is None else argv))
    _state["started"] = time.perf_counter()  # `train --time` counts from here
    try:
        # Not click's standalone mode: a usage error (a wrong choice, an unknown option) is one line here too.
        code = app(args=args, prog_name="detect", standalone_mode=False)
    except CLICK_ERRORS["UsageError"] as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # `detect data` alone: its help
            error.show()
            sys.exit(2)
        command = error.ctx.command_path if error.ctx is not None else "detect"
        message = error.format_message().replace("Value error, ", "")  # typer's wording of a wrong choice
        typer.echo(f"error: {command}: {message} (see {command} --help)", err=True)
        sys.exit(2)
    except CLICK_ERRORS["ClickException"] as error:
        typer.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except DetectError as error:
        if "--debug" in args:
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode ends (typer.Exit gives a code)


if __name__ == "__main__":
    main()
