"""Test doubles keeping the contracts: a tiny detector (model contract) and a tiny in-memory dataset
of already-transformed items (batch contract), so the engine is tested without the real pieces."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

CLASS_NAMES = ["red", "green"]


class TinyDataset(Dataset):
    """`num_images` 32x32 images, each with one coloured square; items as the transforms produce them."""

    class_names = CLASS_NAMES

    def __init__(self, num_images: int = 16, size: int = 32, seed: int = 0, scale: float = 0.5) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for index in range(num_images):
            image = torch.rand(3, size, size, generator=generator) * 0.2
            label = int(torch.randint(1, 3, (1,), generator=generator))
            x1, y1 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=generator))
            side = int(torch.randint(6, size // 2, (1,), generator=generator))
            image[label - 1, y1:y1 + side, x1:x1 + side] = 1.0
            boxes = torch.tensor([[x1, y1, x1 + side, y1 + side]], dtype=torch.float32)
            target = {
                "boxes": boxes, "labels": torch.tensor([label]), "difficult": torch.zeros(1, dtype=torch.bool),
                "iscrowd": torch.zeros(1, dtype=torch.bool), "image_id": f"img{index:03d}",
                "image_size": torch.tensor([size, size]), "scale": torch.tensor([scale, scale]),
                "orig_size": torch.tensor([int(size / scale), int(size / scale)]),
            }
            self.items.append((image, target))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


class TinyDetector(nn.Module):
    """One box and one class per image from a pooled feature; `nan_at_call` makes that training call's
    loss NaN, `interrupt_at_call` raises KeyboardInterrupt in it."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 4 + num_classes)
        self.num_classes = num_classes
        self.calls = 0
        self.nan_at_call: int | None = None
        self.interrupt_at_call: int | None = None  # a Ctrl-C arriving inside that training call

    def forward(self, images, image_sizes, targets=None):
        out = self.head(self.backbone(images))
        wh = image_sizes.flip(1).repeat(1, 2).to(out.dtype)
        corners = out[:, :4].sigmoid() * wh
        boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]),
                           torch.maximum(corners[:, :2], corners[:, 2:])], dim=1)
        logits = out[:, 4:]
        if targets is None:
            return {"boxes": boxes, "logits": logits}
        self.calls += 1
        if self.interrupt_at_call == self.calls:
            raise KeyboardInterrupt
        gt_boxes = torch.stack([t["boxes"][0] for t in targets])
        gt_labels = torch.stack([t["labels"][0] for t in targets])
        loss_box = F.l1_loss(boxes / wh, gt_boxes / wh)
        if self.nan_at_call == self.calls:
            loss_box = loss_box * float("nan")
        return {"loss_box": loss_box, "loss_cls": F.cross_entropy(logits, gt_labels - 1)}

    def postprocess(self, outputs, image_sizes, scales):
        scores, labels = outputs["logits"].softmax(1).max(1)
        boxes = outputs["boxes"] / scales.to(outputs["boxes"]).repeat(1, 2)
        # One detection per image: padded detections with D = 1 (detect/detections/padded.py).
        return {"boxes": boxes[:, None], "scores": scores[:, None], "labels": labels[:, None] + 1,
                "num": torch.ones_like(labels)}


def build_loaders(config, distributed: bool, num_images: int = 16):
    train_set, val_set = TinyDataset(num_images, seed=0), TinyDataset(8, seed=1)
    train_sampler = DistributedSampler(train_set, shuffle=True, seed=config.train.seed) if distributed else None
    val_sampler = DistributedSampler(val_set, shuffle=False) if distributed else None
    train = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=train_sampler is None,
                       sampler=train_sampler, collate_fn=collate)
    val = DataLoader(val_set, batch_size=config.eval.batch_size, sampler=val_sampler, collate_fn=collate)
    return train, val


def build_model(config, num_classes: int):
    return TinyDetector(num_classes)


class InterruptedLoader:
    """A training loader interrupted (KeyboardInterrupt, as by Ctrl-C) when it is asked for the next
    batch after `after` batches in all, over epochs: the moment between two optimiser steps."""

    def __init__(self, loader, after: int) -> None:
        self.loader, self.after, self.served = loader, after, 0

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            if self.served == self.after:
                raise KeyboardInterrupt
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.served += 1
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # dataset, sampler, ...: the wrapped loader's
        return getattr(self.loader, name)


def interrupted_loaders(after: int):
    """build_loaders whose training loader is interrupted after `after` batches (InterruptedLoader)."""

    def build(config, distributed: bool):
        train_loader, val_loader = build_loaders(config, distributed)
        return InterruptedLoader(train_loader, after), val_loader

    return build


@contextlib.contextmanager
def engine_on(loaders=build_loaders, model=build_model):
    """detect.engine.run builds its loaders with `loaders(config, distributed)` and its model with
    `model(config, num_classes)` inside the block (the module attributes the run calls)."""
    from detect.engine import run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run, "build_loaders", loaders)
        patch.setattr(run, "build_starting_model", model)
        yield


def tiny_config(iou_thresh: float = 0.5, **train):
    """A Config for the doubles: SGD with warmup and a schedule, small logging interval."""
    from detect.config import Config

    defaults = dict(epochs=3, batch_size=4, lr=0.05, warmup_iters=3, scheduler="cosine", log_every=2,
                    eval_every=1, momentum=0.9, weight_decay=1e-4)
    defaults.update(train)
    return Config.model_validate(
        {"name": "tiny", "train": defaults, "eval": {"batch_size": 4, "iou_thresh": iou_thresh}})
