"""Throughput of the training data pipeline (decode + augment + resize [+ normalize] + collate [+ pin]).

    python tools/bench_data.py --config voc_ssd300 --set data.root=... --workers 2 --num-batches 20 [--pin]

Prints images/s over `--num-batches` batches after `--warmup` batches, images/s per worker process,
and the batch's dtype and size. The warm-up defaults to two batches per worker: each worker prefetches
two batches at start, and counting those would credit the pipeline with work done before the clock
started.

`--set input.normalize_on=loader` measures the float32 batches normalized in the workers, `device`
(the default) the uint8 ones (their normalization happens on the GPU, after this pipeline). `--pin`
adds the DataLoader's pin-memory thread (page-locked copies of each batch in the main process),
which needs CUDA: torch cannot pin memory without an accelerator, so on a CPU-only machine the flag
is reported and ignored.

`--repeat N` lists the dataset N times in one epoch. A small dataset (raccoon: 160 training images,
five SSD batches of 32) has fewer batches per epoch than many workers can work on at once, and each
epoch's start then waits for a whole batch; a real training set (VOC07 trainval: 5,011 images) does
not. Repeating measures the pipeline's steady state, which is what a long epoch sees.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.config import load_config  # noqa: E402
from detect.data.build import build_dataset  # noqa: E402
from detect.data.loader import build_dataloader  # noqa: E402


class Repeated(torch.utils.data.Dataset):
    """`raw` listed `times` times (what the loader needs of it: items, class names and, for aspect-ratio
    grouping, the samples' annotated sizes)."""

    def __init__(self, raw, times: int) -> None:
        self.raw, self.times = raw, times
        self.class_names = list(getattr(raw, "class_names", []))
        if hasattr(raw, "samples"):
            self.samples = list(raw.samples) * times

    def __len__(self) -> int:
        return len(self.raw) * self.times

    def __getitem__(self, index: int):
        return self.raw[index % len(self.raw)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=None,
                        help="batches before the clock starts (default: 2 per worker, at least 2)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="list the dataset this many times per epoch")
    parser.add_argument("--pin", action="store_true", help="pin each batch (the DataLoader's pin-memory thread)")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(2, 2 * args.workers)

    cfg = load_config(args.config, args.overrides)
    cfg.data.num_workers = args.workers
    pin = args.pin and torch.cuda.is_available()
    if args.pin and not pin:
        print("--pin: no CUDA device, and torch pins memory only for one; measured without pinning", file=sys.stderr)
    cfg.data.pin_memory = pin  # build_dataloader pins only when asked and CUDA is there
    batch_size = args.batch_size or cfg.train.batch_size
    raw = build_dataset(cfg.data, cfg.data.train_split, training=True)
    if args.repeat > 1:
        raw = Repeated(raw, args.repeat)
    loader = build_dataloader(cfg.data, cfg.input, cfg.augment, cfg.data.train_split, train=True, batch_size=batch_size,
                              raw_dataset=raw)
    images, batches, start = 0, 0, None
    while batches < args.warmup + args.num_batches:
        for batch in loader:
            batches += 1
            if batches == args.warmup:
                start = time.perf_counter()
            elif batches > args.warmup and batch is not None:
                images += batch[0].shape[0]
            if batches >= args.warmup + args.num_batches:
                break
    elapsed = time.perf_counter() - (start or time.perf_counter())
    rate = images / elapsed
    per_worker = rate / max(1, args.workers)
    last = batch[0]
    megabytes = last.numel() * last.element_size() / 2**20
    print(f"{cfg.name}: {images} images in {elapsed:.2f} s: {rate:.1f} images/s with {args.workers} workers "
          f"({per_worker:.1f} per worker), batch {batch_size}, input {tuple(last.shape[2:])} last batch, "
          f"{last.dtype} ({megabytes:.1f} MiB, normalize_on {cfg.input.normalize_on}), "
          f"pinned {'yes' if pin else 'no'}, "
          f"{len(loader)} batches per epoch, cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
