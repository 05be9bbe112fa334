"""benchmarks.host_syncs: every syncing tensor call is named by its file and line."""

from __future__ import annotations

import torch

from benchmarks.host_syncs import find_host_syncs


def test_find_host_syncs_names_the_line():
    def step():
        x = torch.arange(6.0)
        mask = x > 2
        x[mask] = 0.0  # bool-mask indexing: nonzero on CUDA
        return x.sum().item(), x.masked_fill(mask, 1.0)  # masked_fill: no sync

    first = step.__code__.co_firstlineno
    found = find_host_syncs(step, path_filter="tests/")
    assert found == {
        f"benchmarks/test_host_syncs.py:{first + 3} __setitem__[bool mask]": 1,
        f"benchmarks/test_host_syncs.py:{first + 4} item": 1,
    }
