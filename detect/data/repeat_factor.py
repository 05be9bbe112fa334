"""Repeat-factor sampling for imbalanced data: images of rare classes are seen more often per epoch.

The rule is LVIS's (Gupta et al., 2019, "LVIS: A Dataset for Large Vocabulary Instance Segmentation",
section 5): with f(c) the share of training images that contain class c and t the threshold
(`data.repeat_factor_threshold`), class c has the factor r(c) = max(1, sqrt(t / f(c))), and an image the
largest factor of its classes (1 for an image without objects). Classes in more than a share t of the
images are not repeated.

An epoch holds a fixed number of draws, round(sum of the factors): every image floor(r) times, and as
many images again as the fractional parts add up to, drawn without replacement with probability
proportional to them. The epoch's order is a function of (seed, epoch) alone (`set_epoch`), so a
resumed run replays it; under DistributedDataParallel each process takes every world_size-th draw of
the same order (padded by wrapping round, as DistributedSampler does).

    factors = repeat_factors(label_sets, threshold) -> float [N]; class_repeat_factors(...) -> {label: r}
    sampler = RepeatFactorSampler(factors, seed, shuffle=True, num_replicas=1, rank=0)
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Sampler


def class_repeat_factors(label_sets: list[set[int]], threshold: float) -> dict[int, float]:
    """{label: r(c)} for every class present (see the module docstring)."""
    count = max(len(label_sets), 1)
    images_of = Counter(label for labels in label_sets for label in labels)
    return {label: max(1.0, math.sqrt(threshold / (n / count))) for label, n in images_of.items()}


def repeat_factors(label_sets: list[set[int]], threshold: float) -> np.ndarray:
    """float [N]: each image's repeat factor (see the module docstring)."""
    class_factor = class_repeat_factors(label_sets, threshold)
    return np.array([max((class_factor[label] for label in labels), default=1.0) for labels in label_sets])


class RepeatFactorSampler(Sampler[int]):
    def __init__(self, factors: np.ndarray, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.factors = np.asarray(factors, dtype=np.float64)
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.draws = int(round(self.factors.sum()))
        self.num_samples = math.ceil(self.draws / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> list[int]:
        """All processes' draws of this epoch, shuffled."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        whole = np.floor(self.factors).astype(np.int64)
        fractions = self.factors - whole
        indices = np.repeat(np.arange(len(self.factors)), whole)
        extra = self.draws - len(indices)
        if extra > 0:
            chosen = torch.multinomial(torch.as_tensor(fractions), extra, replacement=False, generator=generator)
            indices = np.concatenate([indices, chosen.numpy()])
        order = torch.randperm(len(indices), generator=generator).numpy()
        return indices[order].tolist()

    def __iter__(self):
        indices = self.epoch_indices()
        padded = indices + indices[: self.num_samples * self.num_replicas - len(indices)]
        return iter(padded[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
