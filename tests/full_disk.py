"""Run a `detect` command whose output folder is a tiny tmpfs: a real full disk, not a mock.

The tmpfs is mounted in a mount namespace of the command's own (`unshare -m` as root, `unshare -rm`
otherwise), so nothing outside it sees the mount, and it goes away with the command. After the
command, the folder's listing is printed behind a marker, for the test to see what was left there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

_MARKER, _LOG_MARKER = "=== files left ===", "=== last line of train.log ==="
_SCRIPT = (f'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 97; dir="$2"; shift 2; "$@"; status=$?; '
           f'cd "$dir"; echo "{_MARKER}"; find . -type f -printf "%P %s\\n" | sort; '
           f'echo "{_LOG_MARKER}"; find . -name train.log -exec tail -n 1 {{}} \\; ; exit $status')


@dataclass
class FullDiskRun:
    returncode: int
    stdout: str
    stderr: str
    files: dict[str, int]  # what the folder held at the end: relative path -> bytes
    last_log_line: str  # of a train.log in the folder ("" without one)


def namespace_prefix() -> list[str]:
    if shutil.which("unshare") is None:
        raise RuntimeError("the full-disk tests need unshare (util-linux) to mount a small tmpfs")
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


def run_on_full_disk(args: list[str], folder: Path, size: str, timeout: float = 240) -> FullDiskRun:
    """`python -m detect ARGS` with `folder` (created here) on a tmpfs of `size` (e.g. "3m")."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [*namespace_prefix(), "sh", "-c", _SCRIPT, "sh", size, str(folder), sys.executable, "-m", "detect", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout,
                          env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    if done.returncode == 97:
        raise RuntimeError(f"could not mount a tmpfs in a mount namespace: {done.stderr.strip()}")
    stdout, _, listing = done.stdout.partition(_MARKER)
    listing, _, log_line = listing.partition(_LOG_MARKER)
    files = {}
    for line in listing.strip().splitlines():
        name, _, size_text = line.rpartition(" ")
        files[name] = int(size_text)
    return FullDiskRun(done.returncode, stdout, done.stderr, files, log_line.strip())
