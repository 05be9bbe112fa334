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


def reason_line(error: BaseException) -> str:
    """The line of a library's error message that says why: OpenVINO's messages start with lines that
    say where in its sources ("Exception from src/inference/src/cpp/core.cpp:84:"), not why."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not _is_location(line)]
    return (reasons or lines or [type(error).__name__])[0]


def _is_location(line: str) -> bool:
    """OpenVINO's lines that say where in its sources: "Exception from FILE:LINE:" and "Check '...'
    failed at FILE:LINE:" (the failed condition, in C++)."""
    return line.startswith("Exception from ") or (line.startswith("Check '") and " failed at " in line
                                                   and line.endswith(":"))
