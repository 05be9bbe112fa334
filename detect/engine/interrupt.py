"""How a run stops on Ctrl-C or SIGTERM and keeps what a resume needs.

SIGTERM is turned into KeyboardInterrupt (`stop_on_sigterm`); the loop remembers the buffers and RNG
states of the last optimiser step (`remember_boundary`) and puts them back before last.pt is written
(`rewind_to_boundary`), so the batches replayed on resume start from the same state.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from detect.engine.checkpoint import rng_states
from detect.engine.session import TrainState

if TYPE_CHECKING:
    from detect.engine.session import TrainSession


def stop_on_sigterm():
    """SIGTERM (a cluster's scheduler, `kill`, `timeout`) stops like Ctrl-C: last.pt is written.
    Returns the previous handler (None when not in the main thread, where handlers cannot be set).

    Only the first SIGTERM interrupts: schedulers often repeat it, and a second KeyboardInterrupt
    would abort the writing of last.pt. SIGTERM sent to the whole process group also reaches the
    DataLoader workers; they ignore it (detect.data.loader.WorkerInit) and end with the loader, quietly
    even when the interrupt cut a batch handoff short (detect.data.quiet_handoffs)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    received = []

    def interrupt(signum, frame):
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def remember_boundary(session: TrainSession) -> None:
    """Copies the buffers (device to device, no host sync) and the RNG states (a few kB on the host)."""
    buffers = [buffer.detach() for buffer in session.module.buffers()]
    if session.boundary_buffers is None:
        session.boundary_buffers = [buffer.clone() for buffer in buffers]
    elif buffers:
        torch._foreach_copy_(session.boundary_buffers, buffers)
    session.boundary_rng = rng_states()


def rewind_to_boundary(session: TrainSession) -> None:
    """Puts back the buffers of the last optimiser step (before saving an interrupted run)."""
    if session.boundary_buffers is not None:
        with torch.no_grad():
            for buffer, saved in zip(session.module.buffers(), session.boundary_buffers):
                buffer.copy_(saved)


def interrupted_message(state: TrainState, path: Path) -> str:
    if state.epoch_end_due:
        where = f"after epoch {state.epoch}'s training, before its evaluation and checkpoints were done"
    else:
        where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
    return f"interrupted at step {state.step} ({where}); wrote {path}; continue with --resume auto"
