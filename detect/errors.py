"""Errors a user can cause. The CLI prints them as one line, without a traceback, and exits 2."""


class DetectError(Exception):
    """Base class: the message names the file (and key, line or object) and what is wrong."""


class ConfigError(DetectError):
    """A config file, key or value that cannot be used."""


class DataError(DetectError):
    """A dataset file (image, XML, JSON) that cannot be used."""


class CheckpointError(DetectError):
    """A checkpoint file that is missing or cannot be read."""


def first_line(error: BaseException) -> str:
    """The first line of a library's error message (or its type's name): what a one-line message quotes."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
