"""Writing checkpoints during training, and the random states they keep (reading them for use or
for a resume: detect/checkpoints.py).

A checkpoint is a dict saved with torch.save; detect.engine.train_state lists its keys, builds it
from a training session and restores it into one. Files are written to a temporary name and renamed
into place, so a kill never leaves half a file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from detect.outputs import OutOfSpaceError, is_out_of_space, out_of_space_message


def rng_states() -> dict:
    """RNG states in the forms weights_only loading accepts (no numpy objects)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(numpy_rng_state(states["numpy"]))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def numpy_rng_state(state):
    """np.random.set_state's argument from a stored state: ours (the key as a tensor) or the legacy
    tuple an earlier version stored."""
    if isinstance(state, dict):
        key = state["state"]["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        return {**state, "state": {**state["state"], "key": key.astype(np.uint32)}}
    return state


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Atomic write: a temporary file in the same folder, then os.replace. Temporary files that
    killed checkpoint writes left in that folder are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch's zip writer reports a full disk as a RuntimeError
        if is_out_of_space(error, path.parent):
            kept = f"; the previous {path.name} is kept" if path.exists() else ""
            raise OutOfSpaceError(out_of_space_message(path.parent, path.name, kept)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def remove_stale_temporaries(path: Path) -> None:
    """Deletes the `.<name>.pt.tmp<PID>` files in `path`'s folder whose writing process is gone (a
    kill -9 during a write leaves one, as large as the checkpoint). A live process's file is its write
    in progress. Every checkpoint's, not only `path`'s: best.pt may never be written again."""
    for stale in path.parent.glob(".*.pt.tmp*"):
        pid = stale.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            stale.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to another user
        return True
    return True


