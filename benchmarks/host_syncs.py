"""Tensor calls that would make a CUDA host wait, found by running a step once on any device.

    found = find_host_syncs(step, path_filter="/detect/")   # {"file:line function": calls}

Used by tools/bench_speed.py --sync-report: the design allows no host sync inside a training step
or postprocess except where a log line is due.
"""

from __future__ import annotations

import traceback
from typing import Callable

import torch

# Tensor functions that make a CUDA host wait: a value, or a result of data-dependent size, comes back.
SYNC_FUNCTIONS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "nonzero", "equal",
                  "masked_select", "unique", "argwhere", "__index__"}


class _SyncFinder(torch.overrides.TorchFunctionMode):
    """Records every call of a syncing tensor function, and every indexing with a bool mask, by the
    innermost stack frame in a file whose path contains `path_filter`."""

    def __init__(self, path_filter: str):
        super().__init__()
        self.path_filter = path_filter
        self.found: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_FUNCTIONS or (name in ("__getitem__", "__setitem__") and _has_bool_mask(args)):
            label = name if name in SYNC_FUNCTIONS else f"{name}[bool mask]"
            key = f"{self._where()} {label}"
            self.found[key] = self.found.get(key, 0) + 1
        return func(*args, **(kwargs or {}))

    def _where(self) -> str:
        for frame in reversed(traceback.extract_stack()[:-2]):
            if self.path_filter in frame.filename and frame.filename != __file__:
                return f"{frame.filename.split(self.path_filter, 1)[-1]}:{frame.lineno}"
        return "(outside)"


def _has_bool_mask(args) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(item, torch.Tensor) and item.dtype == torch.bool for item in items)


def find_host_syncs(fn: Callable[[], object], path_filter: str = "/detect/") -> dict[str, int]:
    """Run `fn` once and count the tensor calls that would sync a CUDA host, by the innermost frame in
    a file whose path contains `path_filter`: {"file:line function": calls}. Ops called inside
    torchvision or torch (e.g. torchvision.ops.nms, which syncs on CUDA) show at our calling line only
    when they go through one of SYNC_FUNCTIONS."""
    finder = _SyncFinder(path_filter)
    with finder:
        fn()
    return finder.found
