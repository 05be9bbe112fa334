"""Loader workers stay quiet when the main process abandons a batch it was receiving.

A batch leaves a worker as file descriptors, which the main process fetches from the worker's
multiprocessing resource sharer (a thread in the worker) over a short authenticated connection.
Ctrl-C or SIGTERM can interrupt the main process in the middle of that exchange. The run then stops
as it should (last.pt is written), but the worker's sharer thread finds the connection reset and
prints a traceback through `sys.excepthook`, which reads like a crash. Measured on 2 cores: 20 of 30
SIGTERMs sent to a loop over a 2-worker DataLoader printed one.

`quiet_abandoned_handoffs` is installed by every loader worker (detect.data.loader.WorkerInit). It
drops only connection errors raised inside the resource sharer; every other error still reaches the
hook that was there before.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from types import TracebackType

HANDOFF_ERRORS = (ConnectionError, EOFError, multiprocessing.AuthenticationError)
SHARER_FILE = os.path.join("multiprocessing", "resource_sharer.py")


def is_abandoned_handoff(error_type: type[BaseException], traceback_: TracebackType | None) -> bool:
    """True for a connection error raised in multiprocessing's resource sharer."""
    if not issubclass(error_type, HANDOFF_ERRORS):
        return False
    return any(frame.f_code.co_filename.endswith(SHARER_FILE) for frame, _ in traceback.walk_tb(traceback_))


def quiet_abandoned_handoffs() -> None:
    """Wraps `sys.excepthook` of this process so that abandoned handoffs print nothing."""
    previous_hook = sys.excepthook

    def hook(error_type, error, traceback_):
        if not is_abandoned_handoff(error_type, traceback_):
            previous_hook(error_type, error, traceback_)

    sys.excepthook = hook
