"""OpenCV's thread pool and fork(): no pool threads exist in the parent at the moment it forks.

A forked child inherits the parent's OpenCV thread pool as data, without its threads. The first
call in the child that touches the pool (`cv2.setNumThreads` in a DataLoader worker, or any resize
big enough to run in parallel) then waits for threads that do not exist, for ever. This happened
whenever the main process had decoded or resized large images before its loader workers started
(tools/eval_map.py: the model-only pass prepares batches in the main process, then the end-to-end
pass starts workers).

The fix is at the fork itself, so that no order of calls can hang: a fork hook shuts the pool down
in the parent just before every fork (`cv2.setNumThreads(1)` joins its threads), and sets the
previous thread count back in the parent right after. The child starts with a pool of no threads,
which it may grow safely. Chosen over starting workers with `spawn` or `forkserver`, which would
need every dataset to be picklable and cost each worker a fresh import of torch.
"""

from __future__ import annotations

import os

import cv2

_state = {"registered": False, "threads": None}


def _before_fork() -> None:
    _state["threads"] = cv2.getNumThreads()
    cv2.setNumThreads(1)


def _after_fork_in_parent() -> None:
    if _state["threads"] is not None:
        cv2.setNumThreads(_state["threads"])
        _state["threads"] = None


def make_opencv_fork_safe() -> None:
    """Registers the fork hooks once per process (later calls do nothing)."""
    if _state["registered"]:
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)
    _state["registered"] = True
