"""Collate padding, dropped samples, aspect-ratio grouping and the DataLoader on an in-memory dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detect.config import AugmentConfig, DataConfig, InputConfig
from detect.data.loader import GroupedBatchSampler, aspect_ratios, build_dataloader, collate


class TinyDataset:
    """Raw items per the dataset contract: landscape and portrait images with one box each."""

    class_names = ["thing"]

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def image_size(self, index):
        return self.sizes[index]

    def __getitem__(self, index):
        h, w = self.sizes[index]
        image = np.full((h, w, 3), index, np.uint8)
        target = {"boxes": np.array([[1, 1, w - 1, h - 1]], np.float32), "labels": np.array([1]),
                  "difficult": np.zeros(1, bool), "iscrowd": np.zeros(1, bool), "image_id": index,
                  "orig_size": np.array([h, w])}
        return image, target


def item(h, w, value=1.0):
    return torch.full((3, h, w), value), {"image_size": torch.tensor([h, w])}


def test_collate_pads_to_multiples_with_zeros():
    images, targets = collate([item(50, 70, 1.0), item(65, 33, 2.0)], size_divisible=32)
    assert images.shape == (2, 3, 96, 96)
    assert torch.all(images[0, :, :50, :70] == 1.0) and images[0, :, 50:].abs().sum() == 0
    assert images[0, :, :, 70:].abs().sum() == 0
    assert torch.all(images[1, :, :65, :33] == 2.0) and images[1, :, :, 33:].abs().sum() == 0
    assert len(targets) == 2
    images, _ = collate([item(64, 32)], size_divisible=1)
    assert images.shape == (1, 3, 64, 32)


def test_grouped_batches_share_orientation():
    sizes = [(100, 200), (200, 100)] * 10 + [(120, 160)] * 3
    ratios = aspect_ratios(TinyDataset(sizes))
    sampler = torch.utils.data.RandomSampler(range(len(sizes)), generator=torch.Generator().manual_seed(0))
    batches = list(GroupedBatchSampler(sampler, ratios, batch_size=4))
    full = [b for b in batches if len(b) == 4]
    for batch in full[:-1]:  # the leftovers at the end may mix
        assert len({ratios[i] > 1 for i in batch}) == 1
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    assert len(batches) <= len(GroupedBatchSampler(sampler, ratios, batch_size=4)) + 1


def test_dataloader_batches_and_targets():
    sizes = [(60, 80), (80, 60), (50, 50), (70, 90), (90, 40)]
    data_cfg = DataConfig(num_workers=0, aspect_ratio_grouping=True)
    input_cfg = InputConfig(resize="keep_ratio", min_size=64, max_size=96, size_divisible=32)
    loader = build_dataloader(data_cfg, input_cfg, AugmentConfig(), "train", train=True, batch_size=2,
                              raw_dataset=TinyDataset(sizes))
    seen = []
    for images, targets in loader:
        assert images.dim() == 4 and images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
        sizes_b = torch.stack([t["image_size"] for t in targets])
        assert (sizes_b[:, 0] <= images.shape[2]).all() and (sizes_b[:, 1] <= images.shape[3]).all()
        seen += [t["image_id"] for t in targets]
    assert sorted(seen) == list(range(len(sizes)))


def test_dataloader_with_workers_gives_workers_different_augmentations():
    sizes = [(40, 40)] * 8
    data_cfg = DataConfig(num_workers=2, persistent_workers=True)
    from detect.config import TransformSpec

    augment = AugmentConfig(train=[TransformSpec(name="shift", p=1.0, limit=0.3)], min_visibility=0.0)
    input_cfg = InputConfig(resize="fixed", size=40, size_divisible=8)
    loader = build_dataloader(data_cfg, input_cfg, augment, "train", train=True, batch_size=1,
                              raw_dataset=TinyDataset(sizes), seed=3)
    boxes = [tuple(targets[0]["boxes"][0].tolist()) for _, targets in loader]
    assert len(boxes) == 8 and len(set(boxes)) > 4


class _Items(torch.utils.data.Dataset):
    def __init__(self, shapes):
        self.shapes = shapes

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, index):
        return item(*self.shapes[index], value=float(index + 1))


def test_collate_in_a_worker_pads_with_zeros():
    """In a worker the batch is made in shared memory, uninitialised: the padding must be zeroed."""
    from detect.data.loader import Collate

    loader = torch.utils.data.DataLoader(_Items([(50, 70), (65, 33), (20, 90)]), batch_size=3, num_workers=1,
                                         collate_fn=Collate(32))
    images, _ = next(iter(loader))
    assert images.shape == (3, 3, 96, 96)
    for index, (h, w) in enumerate([(50, 70), (65, 33), (20, 90)]):
        assert torch.all(images[index, :, :h, :w] == index + 1)
        assert images[index].sum() == (index + 1) * 3 * h * w


def test_auto_workers_fit_the_machine(monkeypatch):
    import os

    from detect.data.loader import resolve_num_workers

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores, expected in ((1, 1), (2, 2), (6, 6), (32, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert resolve_num_workers("auto") == expected
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four trainers share the 32 cores
    assert resolve_num_workers("auto") == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    assert resolve_num_workers("auto") == 1
    assert resolve_num_workers(5) == 5 and resolve_num_workers(0) == 0  # the user's number stands


def test_voc_faster_rcnn_on_two_cores_does_not_ask_for_more_workers_than_torch_allows(monkeypatch):
    import os
    import warnings

    from detect.config import load_config

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # torch's check asks the same
    config = load_config("voc_faster_rcnn")
    assert config.data.num_workers == "auto"
    loaders, caught = {}, {}
    for workers in ("auto", 8):
        data_cfg = config.data.model_copy(update={"num_workers": workers})
        with warnings.catch_warnings(record=True) as caught[workers]:
            warnings.simplefilter("always")
            loaders[workers] = build_dataloader(data_cfg, config.input, config.augment, "train", train=True,
                                                batch_size=2, raw_dataset=TinyDataset([(40, 60)] * 4))
            loaders[workers].check_worker_number_rationality()  # what iterating it checks again
    assert loaders["auto"].num_workers == 2 and not caught["auto"]
    # The user's own number stands, with torch's warning.
    assert loaders[8].num_workers == 8 and any("freeze" in str(w.message) for w in caught[8])
def test_a_skipped_sample_travels_with_the_target_that_replaced_it(tmp_path):
    from detect.config import AugmentConfig, InputConfig
    from detect.data.dataset import skipped_in
    from detect.data.loader import TransformedDataset
    from detect.data.transforms import build_transforms
    from detect.data.voc import VOCDataset
    from tests.data.conftest import write_voc

    root = write_voc(
        tmp_path / "voc", {"a": [("cat", 2, 2, 20, 20)], "b": [("cat", 5, 5, 30, 30)]}, {"train": ["a", "b"]})
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    raw = VOCDataset(root, "train", classes=["cat"], on_error="skip")
    dataset = TransformedDataset(
        raw, build_transforms(InputConfig(min_size=32, max_size=64), AugmentConfig(train=[]), train=False))
    first, second = dataset[0][1], dataset[1][1]
    assert first["image_id"] == "b"
    assert skipped_in([first, second]) == [(str(root / "JPEGImages" / "a.jpg"), raw.problems[0].message)]
    assert "skipped" not in second


def test_no_builtin_config_asks_a_two_core_machine_for_more_workers_than_it_has(monkeypatch):
    """What torch warns "may freeze": a built-in config's loader workers fit the machine (`auto`, or a
    number a small machine has, as the synthetic main jobs on 2 cores set)."""
    import os

    from detect.config import builtin_config_names, load_config
    from detect.data.loader import resolve_num_workers

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    asked = {name: resolve_num_workers(load_config(name).data.num_workers) for name in builtin_config_names()}
    assert {name: workers for name, workers in asked.items() if workers > 2} == {}


@pytest.mark.parametrize("count, size, expected", [(9, 4, [4, 5]), (8, 4, [4, 4]), (10, 4, [4, 4, 2]), (1, 4, [1]),
                                                   (205, 4, [4] * 50 + [5])])
def test_a_lone_last_training_image_joins_the_batch_before(count, size, expected):
    from torch.utils.data import BatchSampler, SequentialSampler

    from detect.data.loader import NoLoneLastBatch

    batches = NoLoneLastBatch(BatchSampler(SequentialSampler(range(count)), size, drop_last=False))
    found = list(batches)
    assert [len(batch) for batch in found] == expected and len(batches) == len(expected)
    assert sorted(index for batch in found for index in batch) == list(range(count))  # every image, once
    assert isinstance(batches.sampler, SequentialSampler) and batches.batch_size == size


def test_the_training_loader_never_ends_on_one_image(tmp_path):
    from detect.config import load_config
    from detect.data.loader import build_dataloader
    from detect.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "voc", format="voc", num_images=11, image_size=64, val_fraction=0.2)
    config = load_config("synthetic_ssd", [f"data.root={tmp_path / 'voc'}", "data.num_workers=0"])
    loader = build_dataloader(config.data, config.input, config.augment, config.data.train_split, True, 4)
    sizes = [len(targets) for _, targets in loader]
    assert len(loader.dataset) % 4 == 1 and sizes[-1] > 1 and len(sizes) == len(loader)
