"""Where a command writes: never over one of its own inputs, and one clear line when it cannot write.

    refuse_overwrite(option, outputs, inputs)   DetectError when an output is one of the inputs
    writable_folder(option, folder)             creates `folder`; DetectError when it cannot be written
    writable_file(option, path)                 the same for a file's folder; `path` must not be a folder
    atomic_output(path) as temporary            write to `temporary`, renamed to `path` when done: a kill,
                                                an error or a full disk never leaves half a file at `path`

`option` is what the user typed to choose the output (`--out`, `--json` ...): the message names it
together with the path. Commands call these before their long work starts, so a bad output path
fails at once and not after an hour of training or evaluation.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from detect.errors import DetectError


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name the same file (links and `..` included); False when either is missing.

    `a` is resolved first: in `new/../model.pt` the folder `new` does not exist yet, so the kernel
    cannot follow that path, but once the command creates its output folder it names `model.pt`."""
    try:
        return os.path.samefile(os.path.realpath(a), b)
    except OSError:
        return False


def refuse_overwrite(option: str, outputs: Iterable[Path], inputs: Iterable[Path | None],
                     given: Path | None = None) -> None:
    """DetectError naming the option and the input when any output would replace an input. `given`:
    the folder the user named, when the outputs are files the command names inside it."""
    inputs = [Path(path) for path in inputs if path is not None]
    for output in outputs:
        for source in inputs:
            if same_file(Path(output), source):
                what = "folder" if given is not None else "path"
                raise DetectError(f"{option} {given or output}: would overwrite the input {source}; "
                                  f"choose another {what}")


def writable_folder(option: str, folder: str | Path) -> Path:
    """Creates `folder` (and its parents) and checks that a file can be created in it."""
    return _prepare_folder(option, Path(folder), Path(folder))


def writable_file(option: str, path: str | Path) -> Path:
    """Checks that the file `path` can be written: its folder is writable and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise DetectError(f"{option} {path}: is a folder; give a file name")
    _prepare_folder(option, path.parent, path)
    return path


def _prepare_folder(option: str, folder: Path, given: Path) -> Path:
    """Every reason a folder cannot take files (a read-only folder or mount, no permission, a path
    under a file, a full disk) comes through the same OSError and becomes one line naming `given`.
    The probe file is created and removed at once: a folder that exists but refuses writes is found
    here, not when the first result is due."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise DetectError(f"{option} {given}: cannot create the folder, {blocker} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test"):
            pass
    except OSError as error:
        raise DetectError(f"{option} {given}: cannot write there ({error.strerror or error})") from None
    return folder


def _file_in_the_way(folder: Path) -> Path | None:
    """The first existing path on the way to `folder` (itself included) that is not a folder."""
    for candidate in reversed([folder, *folder.parents]):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


# Below this many free bytes a failed write is taken for a full disk: writers that do not report the
# operating system's error (torch's zip writer, OpenCV's encoders) leave only this trace of it.
NEARLY_FULL_BYTES = 1 << 20


class OutOfSpaceError(DetectError):
    """A write failed because the disk (or the user's quota) is full."""


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_out_of_space(error: BaseException | None, folder: Path) -> bool:
    """True when a failed write (`error`, or None for a writer that only returned false) failed for
    lack of space: the operating system said so, or the disk is (nearly) full now."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def out_of_space_message(folder: Path, name: str, note: str = "") -> str:
    """`note`: what the failed write did not lose, e.g. "; the previous last.pt is kept"."""
    return f"no space left on {folder}: {name} not written{note} (free some space, or choose another folder)"


def temporary_name(path: Path) -> Path:
    """`.name.tmp<PID>.suffix` beside `path`: hidden, unique to the process, and with the suffix that
    tells OpenCV's writers the format."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write; when the block ends without error it is renamed
    to `path` (an existing `path` is replaced only then), otherwise removed. A failure for lack of
    space becomes OutOfSpaceError naming the folder and the file."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        if is_out_of_space(error, path.parent):
            raise OutOfSpaceError(out_of_space_message(path.parent, path.name)) from None
        raise
    finally:
        if temporary.exists():
            temporary.unlink()
