"""Problems found in a dataset: each names its file and says what is wrong.

An `error` is something the data cannot be used as (unreadable image, malformed annotation,
degenerate box, unknown class): with `on_error: raise` it raises DataError at once, with `skip` the
sample or object is left out and the problem recorded. A `warning` is something we repair and
report (a box clipped to the image, an annotated size that disagrees with the pixels).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from detect.errors import DataError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    severity: Severity = "error"
    kind: str = "other"  # short tag for counting: degenerate_box, clipped_box, unreadable_image ...

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


class ProblemLog:
    """Collects problems; `error()` raises in raise mode, records and returns in skip mode."""

    def __init__(self, on_error: Literal["raise", "skip"] = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.problems: list[Problem] = []
        # A sample read again every epoch must not be reported again every epoch.
        self._seen: set[Problem] = set()

    def error(self, file: object, message: str, kind: str = "other") -> None:
        if self.on_error == "raise":
            raise DataError(f"{file}: {message}")
        self.add(Problem(str(file), message, "error", kind))

    def warning(self, file: object, message: str, kind: str = "other") -> None:
        self.add(Problem(str(file), message, "warning", kind))

    def add(self, problem: Problem) -> None:
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(problem)

    @property
    def num_errors(self) -> int:
        return sum(problem.severity == "error" for problem in self.problems)

    def counts(self) -> Counter:
        """How many problems of each (severity, kind)."""
        return Counter((problem.severity, problem.kind) for problem in self.problems)
