"""Batches: transformed datasets, the padding collate, aspect-ratio grouping and the DataLoader.

    images, targets = batch
        images   uint8 [B, 3, H, W] pixels (input.normalize_on device, the default) or float32
                 [B, 3, H, W] normalized (normalize_on loader): each image top-left, zeros after it;
                 H and W multiples of `size_divisible`. Consumers move it to their device and call
                 detect.data.normalize.normalize_batch, which gives float32 either way.
        targets  list of B transformed target dicts (see transforms.py): image_size, scale, boxes ...

A raw dataset never returns None: under data.on_error: skip it gives the next readable sample instead
(detect.data.dataset). Aspect-ratio grouping needs each image's size without
decoding it: the raw dataset should offer `image_size(index) -> (h, w)`; without it the loader falls
back to the samples' annotated sizes (`dataset.samples[i].annotated_size`), else reads every image once.
"""

from __future__ import annotations

import math
import os
import random
import signal
from typing import Iterator, Sequence

import cv2
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from detect.config import AugmentConfig, DataConfig, InputConfig
from detect.data.dataset import SKIPPED
from detect.data.opencv_fork import make_opencv_fork_safe
from detect.data.quiet_handoffs import quiet_abandoned_handoffs
from detect.data.repeat_factor import RepeatFactorSampler, repeat_factors
from detect.errors import DataError

# Registered when the loader module is imported, before any worker can be forked (see opencv_fork.py).
make_opencv_fork_safe()


class TransformedDataset(Dataset):
    """`raw_dataset[i]` passed through `transforms`."""

    def __init__(self, raw_dataset, transforms) -> None:
        self.raw = raw_dataset
        self.transforms = transforms
        self.class_names = list(getattr(raw_dataset, "class_names", []))

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int):
        image, target = self.raw[index]
        image, transformed = self.transforms(image, target)
        if SKIPPED in target:  # what on_error: skip left out, for the main process to report
            transformed[SKIPPED] = target[SKIPPED]
        return image, transformed


def collate(batch: Sequence, size_divisible: int = 32):
    """List of (image [3, h, w], target) -> (images [B, 3, H, W] zero-padded, list of targets).
    The batch has the images' dtype (uint8 pixels or normalized float32; all the same)."""
    images = [image for image, _ in batch]
    dtypes = {image.dtype for image in images}
    if len(dtypes) > 1:  # copying into one batch tensor would silently convert some of them
        raise TypeError(f"collate: images of different dtypes in one batch: {sorted(map(str, dtypes))}")
    height = round_up(max(image.shape[1] for image in images), size_divisible)
    width = round_up(max(image.shape[2] for image in images), size_divisible)
    padded = _new_batch(images[0], (len(images), 3, height, width))
    for slot, image in zip(padded, images):
        h, w = image.shape[1:]
        slot[:, :h, :w].copy_(image)
        slot[:, h:, :].zero_()
        slot[:, :h, w:].zero_()
    return padded, [target for _, target in batch]


def _new_batch(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised tensor for the batch; in a DataLoader worker, in shared memory from the start
    (as torch's default_collate does), so sending it to the main process copies nothing. Otherwise
    the batch (60 MB for 8 images of 600 x 1000) would be copied once more into shared memory."""
    if torch.utils.data.get_worker_info() is None:
        return like.new_empty(shape)
    storage = like._typed_storage()._new_shared(math.prod(shape), device=like.device)
    return like.new(storage).view(shape)


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


class Collate:
    """`collate` with a fixed `size_divisible` (a picklable callable for worker processes)."""

    def __init__(self, size_divisible: int) -> None:
        self.size_divisible = size_divisible

    def __call__(self, batch):
        return collate(batch, self.size_divisible)


# ---------------------------------------------------------------------------------------------------
# Aspect-ratio grouping


def aspect_ratios(raw_dataset) -> list[float]:
    """Width / height of every image, as cheaply as the dataset allows (see the module docstring)."""
    if hasattr(raw_dataset, "image_size"):
        sizes = [raw_dataset.image_size(i) for i in range(len(raw_dataset))]
    elif hasattr(raw_dataset, "samples") and all(
        getattr(s, "annotated_size", None) for s in raw_dataset.samples
    ):
        sizes = [s.annotated_size for s in raw_dataset.samples]
    else:
        sizes = [raw_dataset[i][0].shape[:2] for i in range(len(raw_dataset))]
    return [w / h for h, w in sizes]


class GroupedBatchSampler(BatchSampler):
    """Batches of indices from `sampler` whose images share an aspect-ratio group (landscape vs.
    portrait by default: `boundaries` split width/height), so padding wastes little. Each group fills
    its own batch; leftovers are emitted at the end (unless drop_last), grouped as far as possible."""

    def __init__(self, sampler: Sampler, ratios: Sequence[float], batch_size: int, drop_last: bool = False,
                 boundaries: Sequence[float] = (1.0,)) -> None:
        self.sampler = sampler
        self.groups = [sum(r > b for b in boundaries) for r in ratios]
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[int, list[int]] = {}
        for index in self.sampler:
            bucket = buckets.setdefault(self.groups[index], [])
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()
        leftovers = [index for group in sorted(buckets) for index in buckets[group]]
        for start in range(0, len(leftovers), self.batch_size):
            batch = leftovers[start : start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)


class NoLoneLastBatch(Sampler):
    """Training batches with a last batch of one image joined to the batch before it. A split of N images
    in batches of B ends with one image whenever N % B == 1 (205 images in batches of 4, 161 in 16), and
    BatchNorm in training cannot normalize a single image's 1 x 1 maps (MobileNetV3's squeeze-excite
    layers): the step would fail. Every image is still seen each epoch."""

    def __init__(self, batches: BatchSampler) -> None:
        self.batches = batches

    @property
    def sampler(self) -> Sampler:
        """The index sampler underneath (training calls its set_epoch)."""
        return self.batches.sampler

    @property
    def batch_size(self) -> int:
        return self.batches.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        previous = None
        for batch in self.batches:
            if previous is not None and len(batch) == 1:
                batch, previous = previous + batch, None
            if previous is not None:
                yield previous
            previous = batch
        if previous is not None:
            yield previous

    def __len__(self) -> int:
        count, size = len(self.batches.sampler), self.batches.batch_size
        lone = count % size == 1 and count > size and not self.batches.drop_last
        return len(self.batches) - int(lone)


# ---------------------------------------------------------------------------------------------------
# The DataLoader


class WorkerInit:
    """Seeds each worker's augmentations from the worker's own torch seed (differs per worker and per
    epoch), keeps OpenCV single-threaded there (the workers are the parallelism), ignores SIGTERM, and
    prints nothing when the main process stops while receiving a batch (detect.data.quiet_handoffs).

    Why SIGTERM is ignored: `timeout`, schedulers and container runtimes send it to the whole process
    group. A worker killed by it makes the main process raise "DataLoader worker ... is killed by
    signal: Terminated" at an arbitrary point, even while it writes last.pt after its own SIGTERM.
    The main process decides how to stop (training saves last.pt); its loaders then end the workers.
    """

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        quiet_abandoned_handoffs()
        info = torch.utils.data.get_worker_info()
        seed = info.seed % 2**32
        random.seed(seed)
        cv2.setNumThreads(1)
        transforms = getattr(info.dataset, "transforms", None)
        if hasattr(transforms, "set_seed"):
            transforms.set_seed(seed)


def resolve_num_workers(setting: int | str, most: int = 8) -> int:
    """`data.num_workers`: a number is used as given; `auto` is the CPU cores this process may use,
    shared among the training processes of this machine (torchrun's LOCAL_WORLD_SIZE), at most `most`
    (beyond that, decoding rarely limits a detector). On 2 cores: 2, where torch warns above that."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(most, cores // processes))


def repeat_factor_sampler(raw_dataset, threshold: float, seed: int, distributed: bool) -> RepeatFactorSampler:
    """data.repeat_factor_threshold: images of rare classes drawn more often (detect/data/repeat_factor.py)."""
    label_sets = [set(int(label) for label in sample.labels) for sample in raw_dataset.samples]
    replicas, rank = ((torch.distributed.get_world_size(), torch.distributed.get_rank()) if distributed
                      else (1, 0))
    return RepeatFactorSampler(repeat_factors(label_sets, threshold), seed, replicas, rank)


def build_dataloader(data_cfg: DataConfig, input_cfg: InputConfig, augment_cfg: AugmentConfig, split: str,
                     train: bool, batch_size: int, distributed: bool = False, seed: int = 0,
                     raw_dataset=None) -> DataLoader:
    """The DataLoader of `split`: shuffled, augmented and (optionally) aspect-grouped when `train`.

    `distributed` (or a running torch.distributed group) shards the data with a DistributedSampler;
    call `loader.sampler.set_epoch(epoch)` (or `loader.batch_sampler.sampler`) each epoch then. With
    data.repeat_factor_threshold, training draws images by their repeat factors (RepeatFactorSampler,
    sharded likewise).
    `raw_dataset` replaces `build_dataset(data_cfg, split)` (tests, in-memory data).
    """
    from detect.data.transforms import build_transforms

    if raw_dataset is None:
        from detect.data.build import build_dataset

        raw_dataset = build_dataset(data_cfg, split, training=train)
    if len(raw_dataset) == 0:
        error = getattr(raw_dataset, "empty_split_error", None)
        raise error(split) if error is not None else DataError(f"{data_cfg.root}: split '{split}' has no images")
    # Images but not one object: training on it learns nothing, scoring it means nothing.
    no_objects = getattr(raw_dataset, "no_objects_error", lambda split: None)(split)
    if no_objects is not None:
        raise no_objects
    transforms = build_transforms(input_cfg, augment_cfg, train=train)
    transforms.set_seed(seed)  # the main process's stream, used when num_workers == 0
    dataset = TransformedDataset(raw_dataset, transforms)
    generator = torch.Generator().manual_seed(seed)
    distributed = distributed or (torch.distributed.is_available() and torch.distributed.is_initialized())
    if train and data_cfg.repeat_factor_threshold is not None:
        sampler = repeat_factor_sampler(raw_dataset, data_cfg.repeat_factor_threshold, seed, distributed)
    elif distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=False)
    elif train:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    if train and data_cfg.aspect_ratio_grouping:
        batch_sampler = GroupedBatchSampler(sampler, aspect_ratios(raw_dataset), batch_size, drop_last=False)
    else:
        batch_sampler = BatchSampler(sampler, batch_size, drop_last=False)
    if train and batch_size > 1:
        batch_sampler = NoLoneLastBatch(batch_sampler)
    workers = resolve_num_workers(data_cfg.num_workers)
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=Collate(input_cfg.size_divisible),
        pin_memory=data_cfg.pin_memory and torch.cuda.is_available(),
        persistent_workers=data_cfg.persistent_workers and workers > 0,
        worker_init_fn=WorkerInit() if workers > 0 else None,
        generator=generator,
    )
