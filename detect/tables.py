"""Text tables and plot helpers shared by the commands that print or draw reports.

    markdown_table(rows) -> [lines]: the first row is the header; cells are strings
    pyplot() -> matplotlib.pyplot with the Agg backend (no display needed), imported on first use
    safe_file_name(name) -> a name usable in a file name (class and split names)
"""

from __future__ import annotations

import re
from typing import Sequence


def markdown_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return lines


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"
