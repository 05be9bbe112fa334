"""What `data.on_error: skip` left out, reported: each problem once, as a line in train.log (and on the
console) and a `{"type": "skipped"}` record in metrics.jsonl.

Problems come from two places: those found while the annotations were parsed (the raw dataset's
`problems`, in the main process) and images found unreadable while batches were made, possibly in a
DataLoader worker (carried to the main process in the targets: detect.data.dataset.skipped_in).
"""

from __future__ import annotations

from typing import Iterable

SHOWN_PER_LINE = 10  # a log line names this many; metrics.jsonl has them all


def dataset_errors(source) -> list[tuple[str, str]]:
    """(file, message) of every error a raw dataset (or its ProblemLog) recorded: what on_error:
    skip left out. None (a dataset without such a record) gives []."""
    problems = getattr(source, "problems", None) or []
    return [(problem.file, problem.message) for problem in problems if problem.severity == "error"]


class SkipReport:
    """Collects skipped (file, message) pairs and reports the new ones through a RunLogger-like
    object (`info(line)`, `record(dict)`); `logger` may be None to only collect."""

    def __init__(self, logger=None) -> None:
        self.logger = logger
        self.skipped: list[tuple[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, problems: Iterable[tuple[str, str]], split: str, **context) -> list[tuple[str, str]]:
        """Adds problems; reports and returns those not seen before."""
        new = []
        for problem in problems:
            if problem not in self._seen:
                self._seen.add(problem)
                new.append(problem)
        self.skipped.extend(new)
        if new and self.logger is not None:
            report = summary(new)
            self.logger.info(describe(report["problems"], split))
            self.logger.record({"type": "skipped", "split": split, **context, **report, "total": len(self.skipped)})
        return new


def describe(problems: list[str], split: str) -> str:
    """One line: how many were skipped in the split, and the first few "file: message" texts."""
    shown = "; ".join(problems[:SHOWN_PER_LINE])
    more = f"; and {len(problems) - SHOWN_PER_LINE} more" if len(problems) > SHOWN_PER_LINE else ""
    return f"data.on_error skip: {len(problems)} problem(s) left out of the {split} split: {shown}{more}"


def summary(problems: list[tuple[str, str]]) -> dict:
    """JSON-ready: {"count", "files", "problems"} (what `detect eval --json` writes under "skipped")."""
    return {"count": len(problems), "files": list(dict.fromkeys(file for file, _ in problems)),
            "problems": [f"{file}: {message}" for file, message in problems]}
