"""Reading checkpoints and state dicts without running code from them.

`torch.load(weights_only=True)` accepts only tensors and plain data (dict, list, tuple, str, numbers,
None). A file that asks for anything else (a pickled call to `os.system`, say) is refused before any
of it runs, with a one-line CheckpointError that names the file and what it asked for. Users share
checkpoints and download state dicts, so every loader in the package goes through `safe_torch_load`.

Checkpoints written by earlier versions stored the numpy RNG state as a numpy array: exactly the
numpy types needed to rebuild such an array are allowed, nothing callable.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from detect.errors import CheckpointError

_reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
# numpy 1 wrote the reconstructor's module as numpy.core, numpy 2 as numpy._core: allow both names.
LEGACY_NUMPY_GLOBALS = [
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
    np.ndarray, np.dtype, type(np.dtype(np.uint32)),
]


def safe_torch_load(path: str | Path, what: str, map_location="cpu"):
    """The object in `path`, loaded with weights_only. `what` names the file's kind in errors
    ("checkpoint", "state dict"). Refused or unreadable files raise a one-line CheckpointError."""
    foreign = not_a_torch_file(path)
    if foreign is not None:
        raise CheckpointError(f"{path}: not a readable {what}: {foreign}")
    try:
        with torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = refused_global(str(error))
        if refused is not None:
            raise CheckpointError(f"{path}: refused to load: the {what} asks to run '{refused}'; only tensors "
                                  "and plain data are loaded (is it from a source you trust?)") from None
        raise CheckpointError(f"{path}: not a readable {what} ({unpickler_reason(error)})") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable {what} ({first_line(error)})") from None


# torch.save writes a zip archive; files of torch before 1.6 (and torch.save(_use_new_zipfile_serialization=
# False)) start with a pickle's protocol byte.
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def not_a_torch_file(path: str | Path) -> str | None:
    """What `path` is instead, when its first bytes show it is no file torch.save wrote (empty, text,
    another format); None when it may be one (torch then decides)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(64)
    except OSError:
        return None  # torch.load reports the missing or unreadable file
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(TORCH_FILE_STARTS):
        return None
    text = head.decode("utf-8", errors="replace").splitlines()[0][:40] if head.strip() else ""
    if text.isprintable() and text:
        return f"it is text (it starts with {text!r}), not a file torch.save wrote"
    return f"it starts with the bytes {head[:8].hex(' ')}, where a file torch.save wrote starts as a zip archive"


def refused_global(message: str) -> str | None:
    """The callable or class weights_only loading refused ('posix.system'), read from torch's error
    text; None when the error is not such a refusal (a corrupt file, say)."""
    match = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)|Unsupported class ([\w.]+)"
                      r"|Trying to call reduce for ([\w.]+)", message, flags=re.IGNORECASE)
    return next((name for name in match.groups() if name), None) if match else None


def unpickler_reason(error: Exception) -> str:
    """The line of torch's weights_only error that says what was wrong ("Unsupported operand 110")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("Please file an issue") and index + 1 < len(lines):
            return lines[index + 1]
    return first_line(error)


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
