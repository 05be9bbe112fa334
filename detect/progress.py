"""Whether progress bars are drawn: `--quiet` (`-q`), anywhere on the command line, turns them off for
training, evaluation and inference alike (warnings and results are still printed).

    progress.set_quiet(True)      # the command line's root option
    progress.bars_enabled()       # asked where a bar would be drawn
"""

from __future__ import annotations

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def bars_enabled() -> bool:
    return not _state["quiet"]
