"""Training from a config: the run's set-up around the loop (detect.engine.train).

    run_training(config, output_dir=None, device="auto", resume=None, config_file=None) -> run folder
        builds data (`build_loaders`) and model (`build_starting_model`) from the config, resumes if asked,
        calls `fit`; SIGTERM stops it like Ctrl-C (detect.engine.interrupt).

The run folder holds config.yaml, splits/ (when the validation part is drawn: detect/data/splits.py),
train.log, metrics.jsonl, TensorBoard events, last.pt (every epoch, and on Ctrl-C) and best.pt (best
validation mAP); see train_state.py for what a checkpoint holds.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detect.checkpoints import check_finite_weights, load_checkpoint, nonfinite_tensors
from detect.config import Config, config_to_yaml
from detect.data.skip_report import SkipReport, dataset_errors
from detect.data.splits import SPLITS_FOLDER, draws_splits, run_split_lists, write_split_lists
from detect.device import resolve_device
from detect.engine import distributed as dist_utils
from detect.engine.imbalance import class_weights, imbalance_lines
from detect.engine.interrupt import stop_on_sigterm
from detect.engine.logger import RunLogger
from detect.engine.mlflow_sink import MlflowSink, check_tracking_store
from detect.engine.resume_check import check_resumable, describe
from detect.engine.run_folder import (
    carry_records,
    check_run_folder,
    continues_in_place,
    find_resume_checkpoint,
    forget_lost_records,
    lock_run_folder,
    new_run_dir,
    resume_run_dir,
)
from detect.engine.session import make_session
from detect.engine.time_budget import TimeBudget, apply_schedule
from detect.engine.train import fit, nothing_left
from detect.engine.train_state import restore
from detect.errors import CheckpointError, DetectError
from detect.outputs import writable_folder


def run_training(config: Config, output_dir: str | Path | None = None, device: str = "auto",
                 resume: str | None = None, config_file: Path | None = None, started: float | None = None) -> Path:
    """Trains from a config; returns the run folder. `config_file`: the YAML the config was read
    from, which the run folder's files must not replace. `started`: time.perf_counter() when the
    command started, from which a time budget (train.time_minutes) counts; default: now."""
    started = time.perf_counter() if started is None else started
    torch_device = dist_utils.init_distributed(resolve_device(device))
    previous_handler = stop_on_sigterm()
    try:
        run_dir = _train_in_run_folder(config, output_dir, torch_device, resume, config_file, started)
    except torch.OutOfMemoryError:
        raise DetectError(out_of_memory_message(config)) from None
    except RuntimeError as error:
        if dist_utils.is_lost_peer(error):  # a killed rank: say which, not the backend's traceback
            raise DetectError(dist_utils.lost_peer_message()) from None
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    # Only on success: a rank that failed must not wait in a collective teardown for peers that
    # may never arrive (torchrun stops them once this process exits non-zero).
    dist_utils.shutdown()
    return run_dir


def out_of_memory_message(config: Config) -> str:
    size = (f"{config.input.size}x{config.input.size}" if config.input.resize == "fixed"
            else f"min_size {config.input.min_size}, max_size {config.input.max_size}")
    return (f"CUDA out of memory with train.batch_size={config.train.batch_size} and images of {size}: "
            f"lower train.batch_size (train.accumulate keeps the effective batch) or the input size")


def _train_in_run_folder(config: Config, output_dir, device: torch.device, resume: str | None,
                         config_file: Path | None, started: float) -> Path:
    """Everything that may refuse the run happens before its first write: a refused command leaves
    the folders as they were (no config.yaml, no log, no TensorBoard file)."""
    run_dir, checkpoint, checkpoint_path, in_place, new_folders = open_run_folder(config, output_dir, resume)
    with lock_run_folder(run_dir) if dist_utils.is_main() else contextlib.nullcontext(), \
            removed_if_refused(new_folders) as writing_starts:
        if dist_utils.is_main():  # under the lock: a run starting beside this one cannot pass the check too
            check_run_folder(run_dir, config, config_file, resuming_in_place=in_place)
            if "mlflow" in config.train.loggers:
                check_tracking_store()
        seed_everything(config.train.seed, config.train.deterministic)
        config = with_checkpoint_split_lists(config, checkpoint, checkpoint_path)
        train_loader, val_loader = build_loaders(config, dist_utils.is_distributed())
        config = with_dataset_classes(config, train_loader)
        config, split_keys = with_run_split_lists(config, run_dir, train_loader, val_loader)
        changes = []
        if checkpoint is not None:
            check_same_classes(checkpoint, config.data.classes, checkpoint_path)
            changes = check_resumable(checkpoint, config, checkpoint_path)
            if config.train.time_minutes is not None:  # a timed run keeps its fitted length (keep_fitted_schedule)
                changes = [change for change in changes if change[0] not in ("train.epochs", "train.eval_every")]
        model = build_starting_model(config, len(config.data.classes))
        train_samples = _dataset_attribute(train_loader.dataset, "samples") or []
        weights = class_weights(config.train.class_weights, train_samples, config.data.classes)
        if weights is not None:
            model.set_class_weights(weights)
        steps_per_epoch = math.ceil(len(train_loader) / config.train.accumulate)
        session = make_session(config, model, config.data.classes, device, steps_per_epoch, run_dir)
        if config.train.time_minutes is not None and checkpoint is None:
            budget_seconds = config.train.time_minutes * 60
            val_images = len(val_loader.dataset) if val_loader is not None else 0
            session.budget = TimeBudget(budget_seconds, started, steps_per_epoch, val_images,
                                        config.train.batch_size * config.train.accumulate)
        session.category_ids = dataset_category_ids(train_loader)
        if checkpoint is not None:
            restore(session, checkpoint)  # refuses weights that do not fit, before anything is written
            keep_fitted_schedule(session, checkpoint)
            finished = nothing_left(session)
            if finished is not None:
                raise DetectError(f"{checkpoint_path}: nothing to resume: {finished}")
        # From here on the run writes into its folder.
        writing_starts()
        if dist_utils.is_main() and checkpoint is not None:
            if in_place:
                forget_lost_records(run_dir / "metrics.jsonl", checkpoint)
            else:
                carry_records(checkpoint_path.parent, run_dir, checkpoint)
        loggers = config.train.loggers
        sink = (MlflowSink(config, run_dir, resuming=in_place) if "mlflow" in loggers and dist_utils.is_main()
                else None)
        logger = RunLogger(run_dir, enabled=dist_utils.is_main(), tensorboard="tensorboard" in loggers,
                           purge_step=checkpoint["step"] + 1 if checkpoint is not None else None, mlflow=sink)
        session.logger, session.skip_report = logger, SkipReport(logger)
        if dist_utils.is_main():
            if split_keys is not None:
                write_split_lists(Path(config.data.split_lists), *split_keys)
            (run_dir / "config.yaml").write_text(config_to_yaml(config))
        if checkpoint is not None:
            logger.info(f"resumed from {checkpoint_path}: epoch {session.state.epoch}, step {session.state.step}"
                        + (f"; config changes: {describe(changes)}" if changes else ""))
        log_start(session, len(train_loader.dataset), steps_per_epoch)
        for line in imbalance_lines(config, train_samples, config.data.classes, weights):
            logger.info(line)
        warn_input_scaling(session)
        report_dataset_errors(session, train_loader, val_loader)
        failed = False
        try:
            fit(session, train_loader, val_loader)
        except DetectError as error:  # what stopped the run, in its log too
            logger.log_only(f"error: {error}")
            failed = True
            raise
        finally:
            logger.close(failed)
            stop_loader_workers(train_loader, val_loader)
    return run_dir


def stop_loader_workers(*loaders) -> None:
    """Ends the loaders' worker processes now. Persistent workers otherwise live until the loader is
    collected; after an error that can be at interpreter exit, where the main process was seen waiting
    on them for minutes (a failed checkpoint write on a full disk)."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
            loader._iterator = None


def keep_fitted_schedule(session, checkpoint: dict) -> None:
    """A resumed run with a time budget trains the schedule its checkpoint was fitted to (the epochs and
    evaluation interval in the checkpoint's config), not the command line's placeholder epochs."""
    saved = (checkpoint.get("config") or {}).get("train") or {}
    train_cfg = session.config.train
    if train_cfg.time_minutes is None or not saved.get("time_minutes"):
        return
    epochs, eval_every = saved.get("epochs", train_cfg.epochs), saved.get("eval_every", train_cfg.eval_every)
    apply_schedule(session, int(epochs), int(eval_every))


@contextlib.contextmanager
def removed_if_refused(new_folders: list[Path]):
    """Yields a function to call once the run writes into its folder: a run refused before that (bad
    data, a resume with nothing to do) removes the folders it created, if they are still empty."""
    written = []
    try:
        yield lambda: written.append(True)
    except BaseException:
        if not written:
            for folder in new_folders:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def open_run_folder(config: Config, output_dir, resume: str | None):
    """(run folder, checkpoint dict to resume or None, its path or None, whether the resume goes on in
    the checkpoint's own folder, the folders created for it, deepest first); the folder created on rank
    0, and nothing else written."""
    checkpoint = checkpoint_path = None
    if resume is not None:
        checkpoint_path = find_resume_checkpoint(config, resume, output_dir)
        checkpoint = load_checkpoint(checkpoint_path)
        check_finite_weights(checkpoint, checkpoint_path)
        run_dir = resume_run_dir(checkpoint_path, output_dir)
    else:
        run_dir = new_run_dir(config, output_dir)
    run_dir = Path(dist_utils.broadcast_object(str(run_dir)))
    in_place = checkpoint_path is not None and continues_in_place(run_dir, checkpoint_path)
    new_folders = [folder for folder in [run_dir, *run_dir.absolute().parents] if not folder.exists()]
    if dist_utils.is_main():
        writable_folder("--out", run_dir)
    return run_dir, checkpoint, checkpoint_path, in_place, new_folders if dist_utils.is_main() else []


def with_dataset_classes(config: Config, train_loader) -> Config:
    """The config with data.classes resolved from the training data: config.yaml and every
    checkpoint name the classes in label order."""
    class_names = dataset_class_names(train_loader)
    if not class_names:
        raise DetectError(f"{config.data.root}: the training split '{config.data.train_split}' has no class names; "
                          f"set data.classes")
    return _with_data(config, classes=class_names)


def with_checkpoint_split_lists(config: Config, checkpoint: dict | None, checkpoint_path: Path | None) -> Config:
    """A resume of a run that drew its validation part reads the lists that run wrote (its folder's
    splits/, else the folder its config names), so that images added since change neither part."""
    if checkpoint is None or not draws_splits(config.data) or config.data.split_lists is not None:
        return config
    lists = run_split_lists(checkpoint_path.parent, (checkpoint.get("config") or {}).get("data", {}))
    return config if lists is None else _with_data(config, split_lists=str(lists))


def with_run_split_lists(config: Config, run_dir: Path, train_loader, val_loader):
    """(config, (train keys, val keys) or None): a run whose parts are drawn records them in its folder's
    splits/ (written with config.yaml) and names that folder in data.split_lists."""
    if not draws_splits(config.data):
        return config, None
    keys = tuple([str(sample.image_id) for sample in _dataset_attribute(loader.dataset, "samples")]
                 for loader in (train_loader, val_loader))
    return _with_data(config, split_lists=str(run_dir / SPLITS_FOLDER)), keys


def _with_data(config: Config, **changes) -> Config:
    return config.model_copy(update={"data": config.data.model_copy(update=changes)})


def build_starting_model(config: Config, num_classes: int) -> nn.Module:
    """The model a run starts from: the config's detector for `num_classes` foreground classes
    (model.pretrained applied; detector weights carry the classifier's rows over by the names in
    data.classes)."""
    from detect.models.build import build_model

    classes = list(config.data.classes) if config.data.classes else None
    model = build_model(config.model, config.input, num_classes, classes)
    # Fresh weights are finite, so a NaN or infinity came from the starting weights: a run from them
    # would only skip or stop at its first step, blaming the learning rate.
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise CheckpointError(f"model.pretrained {config.model.pretrained}: {len(bad)} weight tensor(s) hold NaN or "
                              f"infinite values (first: {bad[0]}); training cannot start from them")
    return model


def log_start(session, num_train_images: int, steps_per_epoch: int) -> None:
    config = session.config
    num_params = sum(p.numel() for p in session.module.parameters() if p.requires_grad)
    session.logger.info(
        f"run folder {session.run_dir}; {config.model.arch} ({config.model.backbone}), "
        f"{len(session.class_names)} classes, {num_params / 1e6:.2f} M trainable parameters; "
        f"{num_train_images} train images, {steps_per_epoch} steps/epoch; "
        f"device {session.device} x {dist_utils.world_size()}")
    session.logger.info(lr_message(config.train, dist_utils.world_size()))
    warmup = warmup_message(config.train, steps_per_epoch)
    if warmup is not None:
        session.logger.info(warmup)


def warmup_message(train_cfg, steps_per_epoch: int) -> str | None:
    """Said when train.warmup_iters asks for more than its share of the run (optim.warmup_steps)."""
    from detect.engine.optim import MAX_WARMUP_SHARE, warmup_steps

    steps = warmup_steps(train_cfg, steps_per_epoch)
    if steps >= train_cfg.warmup_iters:
        return None
    return (f"warmup: {steps} steps, not train.warmup_iters {train_cfg.warmup_iters}: warmup takes at most "
            f"{MAX_WARMUP_SHARE:.0%} of the run's {train_cfg.epochs * steps_per_epoch} steps")


def lr_message(train_cfg, world_size: int) -> str:
    """The learning rate the run uses, and how it follows from train.lr and the batch."""
    from detect.engine.optim import batch_sizes, effective_lr

    total, base = batch_sizes(train_cfg, world_size)
    if not train_cfg.scale_lr:
        return f"lr {train_cfg.lr:g} for a total batch of {total} (train.scale_lr: false)"
    return (f"lr {effective_lr(train_cfg, world_size):g}: train.lr {train_cfg.lr:g} for a batch of {base} "
            f"(train.base_batch_size), scaled to the total batch of {total} ({train_cfg.batch_size} x "
            f"{train_cfg.accumulate} accumulated x {world_size} processes)")


def warn_input_scaling(session) -> None:
    """COCO-trained starting weights with another input scaling: a warning, not an error (a user may
    mean it), so that a weak start is not a mystery."""
    from detect.models.weights import coco_input_mismatch

    config = session.config
    if session.state.step > 0:
        return  # resumed: said at the start of the run
    warning = coco_input_mismatch(config.model.pretrained, config.model.arch, config.model.backbone,
                                  config.input.mean, config.input.std)
    if warning:
        session.logger.info(f"warning: {warning}")


def report_dataset_errors(session, train_loader, val_loader) -> None:
    """The problems found while the annotations were parsed, to the skip report."""
    config = session.config
    for split, loader in ((config.data.train_split, train_loader), (config.data.val_split, val_loader)):
        if loader is not None:
            session.skip_report.add(dataset_errors(_dataset_attribute(loader.dataset, "log")), split)


def build_loaders(config: Config, distributed: bool):
    """(train loader, val loader); both splits use the training split's class names (see with_class_names)."""
    from detect.data.build import build_dataset, with_class_names
    from detect.data.loader import build_dataloader

    raw_train = build_dataset(config.data, config.data.train_split, training=True)
    data_cfg = with_class_names(config.data, raw_train)
    train_loader = build_dataloader(data_cfg, config.input, config.augment, config.data.train_split,
                                    train=True, batch_size=config.train.batch_size, distributed=distributed,
                                    seed=config.train.seed, raw_dataset=raw_train)
    val_loader = build_dataloader(data_cfg, config.input, config.augment, config.data.val_split,
                                  train=False, batch_size=config.eval.batch_size, distributed=distributed,
                                  seed=config.train.seed)
    return train_loader, val_loader


def dataset_class_names(loader) -> list[str]:
    """Class names of the dataset behind a loader (walking through wrapper datasets)."""
    return list(_dataset_attribute(loader.dataset, "class_names"))


def dataset_category_ids(loader) -> list[int] | None:
    """COCO data: the category id of each label 1..C; None for data without category ids (VOC)."""
    category_map = _dataset_attribute(loader.dataset, "category_map")
    return None if category_map is None else [int(i) for i in category_map.category_ids]


def _dataset_attribute(dataset, name: str):
    """`name` of the first dataset that has it, down through wrappers (Subset's `dataset`,
    TransformedDataset's `raw`); None when none has it."""
    while dataset is not None and not hasattr(dataset, name):
        inner = getattr(dataset, "dataset", None)  # not `or`: an empty dataset is falsy
        dataset = inner if inner is not None else getattr(dataset, "raw", None)
    return getattr(dataset, name, None)


def check_same_classes(checkpoint: dict, class_names: list[str], path: Path) -> None:
    """A resumed run must keep the checkpoint's classes in its order: its head's outputs are those labels."""
    saved = list(checkpoint["class_names"])
    if saved == list(class_names):
        return
    if sorted(saved) == sorted(class_names):
        problem = "in another order"
    else:
        problem = f"differ ({', '.join(class_names)})"
    raise CheckpointError(f"{path}: cannot resume: its classes are {', '.join(saved)}; this config's {problem}; "
                          f"set data.classes to the checkpoint's list")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
