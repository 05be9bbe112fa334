"""Throughput of the training data pipeline (decode + augment + resize + normalise + collate).

    python tools/bench_data.py --config voc_ssd300 --set data.root=... --workers 2 --num-batches 20

Prints images/s over `--num-batches` batches after `--warmup` batches (worker start-up excluded),
and images/s per worker process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.config import load_config  # noqa: E402
from detect.data.loader import build_dataloader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    cfg.data.num_workers = args.workers
    batch_size = args.batch_size or cfg.train.batch_size
    loader = build_dataloader(cfg.data, cfg.input, cfg.augment, cfg.data.train_split, train=True, batch_size=batch_size)
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
    print(f"{cfg.name}: {images} images in {elapsed:.2f} s: {rate:.1f} images/s with {args.workers} workers "
          f"({per_worker:.1f} per worker), batch {batch_size}, input {tuple(batch[0].shape[2:])} last batch, "
          f"cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
