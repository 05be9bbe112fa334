"""Where a command writes: never over one of its own inputs, and one clear line when it cannot write.

    refuse_overwrite(option, outputs, inputs)   DetectError when an output is one of the inputs
    writable_folder(option, folder)             creates `folder`; DetectError when it cannot be written
    writable_file(option, path)                 the same for a file's folder; `path` must not be a folder
    writable_image(option, path)                the same for a drawing, which replaces only an earlier image
    atomic_output(path) as temporary            write to `temporary`, renamed to `path` when done: a kill,
                                                an error or a full disk never leaves half a file at `path`
    staged_folder(option, out, own) as staging  the same for a folder of files (a dataset, video clips):
                                                built in `staging` beside `out`, moved into place whole

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
from typing import Callable, Iterable, Iterator

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


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG


def writable_image(option: str, path: str | Path) -> Path:
    """writable_file for a drawing (PNG or JPEG): a file already at `path` is replaced only when it is
    such an image itself (an earlier drawing), never a checkpoint, a log or any other file."""
    path = Path(path)
    if path.is_file():
        with path.open("rb") as stream:
            head = stream.read(8)
        if not head.startswith(IMAGE_SIGNATURES):
            raise DetectError(f"{option} {path}: exists and is not an image; a drawing replaces only an earlier "
                              "drawing: choose another name")
    return writable_file(option, path)


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


def is_empty_folder(folder: Path) -> bool:
    return folder.is_dir() and next(folder.iterdir(), None) is None


def check_new_folder(option: str, out: Path, own: Callable[[Path], bool] | None = None) -> None:
    """DetectError unless `out` is absent, an empty folder, or (`own(out)`) this command's own earlier
    output, which it may replace whole: a multi-file output never lands among a user's files."""
    if out.exists() and not out.is_dir():
        raise DetectError(f"{option} {out}: is a file; give a new or empty folder")
    if not out.exists() or is_empty_folder(out) or (own is not None and own(out)):
        return
    example = next(out.iterdir()).name
    raise DetectError(f"{option} {out}: not empty (it holds {example}, ...); write into a new or empty folder")


@contextmanager
def staged_folder(option: str, out: str | Path, own: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yields a new empty folder beside `out` (`.<name>.tmp<PID>`) to write a multi-file output into.
    When the block ends without error, it takes the place of `out`; on an error, a kill or a full disk
    it is removed, and `out` is as it was. `out` must pass check_new_folder (an earlier output that
    `own` recognises is replaced whole, and only once the new one is complete)."""
    out = Path(out)
    check_new_folder(option, out, own)
    _prepare_folder(option, out.parent, out)
    staging = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of a killed run of this same process id
    try:
        staging.mkdir()
        yield staging
        _move_into_place(staging, out)
    except (OSError, RuntimeError) as error:
        if is_out_of_space(error, out.parent):
            raise OutOfSpaceError(out_of_space_message(out.parent, out.name)) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, out: Path) -> None:
    """Renames `staging` to `out`; an existing `out` (empty, or an output being replaced) is moved
    aside first and removed once the new folder is in place."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


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
