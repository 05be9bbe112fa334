"""Repeat-factor sampling (LVIS's rule): factors, a fixed epoch length, seeded epochs, DDP shards."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from detect.data.repeat_factor import RepeatFactorSampler, repeat_factors


def test_factors_follow_the_lvis_rule():
    # class 1 in 8 of 10 images, class 2 in 1, one image empty
    label_sets = [{1}] * 7 + [{1, 2}] + [set()] * 2
    factors = repeat_factors(label_sets, threshold=0.4)
    assert factors[0] == 1.0  # f = 0.8 > t
    assert factors[7] == pytest.approx(math.sqrt(0.4 / 0.1))  # the rarest class decides
    assert factors[8] == 1.0  # no objects


def test_epochs_have_a_fixed_length_and_draw_each_image_by_its_factor():
    factors = np.array([1.0, 1.0, 2.5, 1.5, 3.0])  # a whole sum: every image drawn r times on average
    sampler = RepeatFactorSampler(factors, seed=4)
    draws = Counter()
    for epoch in range(400):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler) == round(factors.sum())
        draws.update(indices)
    np.testing.assert_allclose([draws[i] / 400 for i in range(5)], factors, atol=0.08)


def test_an_epoch_is_a_function_of_seed_and_epoch_and_shards_cover_it():
    factors = repeat_factors([{1}] * 20 + [{2}] * 3, threshold=0.5)
    sampler = RepeatFactorSampler(factors, seed=1)
    sampler.set_epoch(3)
    first = list(sampler)
    again = RepeatFactorSampler(factors, seed=1)
    again.set_epoch(3)
    assert list(again) == first
    again.set_epoch(4)
    assert list(again) != first
    shards = [RepeatFactorSampler(factors, seed=1, num_replicas=3, rank=rank) for rank in range(3)]
    for shard in shards:
        shard.set_epoch(3)
    taken = [list(shard) for shard in shards]
    assert len({len(t) for t in taken}) == 1
    interleaved = [index for position in zip(*taken) for index in position]
    assert interleaved[: len(first)] == sampler.epoch_indices()
