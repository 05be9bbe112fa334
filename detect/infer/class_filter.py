"""`--classes` of `detect infer` and `classes=` of the server: a comma-separated list of class names
-> the labels to keep. One rule for both.

Class names may themselves hold commas ("raccoon, adult"): the text is split at commas, and
neighbouring pieces are joined back wherever together they spell a class name (the longest first).
A list that names no class at all (`","`, `" "`) is an error, as is an unknown name.

    class_labels("circle,square", ["circle", "square", "ring"])   -> {1, 2}
"""

from __future__ import annotations

from typing import Sequence

from detect.errors import DetectError


def split_class_names(text: str, class_names: Sequence[str]) -> list[str]:
    """The names in `text`, each a class name wherever pieces between commas join into one."""
    known = set(class_names)
    pieces = text.split(",")
    names, start = [], 0
    while start < len(pieces):
        for end in range(len(pieces), start, -1):  # the longest run of pieces that is a class name
            candidate = ",".join(pieces[start:end]).strip()
            if candidate in known or end == start + 1:
                break
        if candidate:
            names.append(candidate)
        start = end
    return names


def class_labels(classes: str | Sequence[str], class_names: Sequence[str]) -> set[int]:
    """Labels 1..C of the named classes (a string as for split_class_names, or a list of names);
    DetectError for an empty list or an unknown name, naming the model's classes."""
    names = split_class_names(classes, class_names) if isinstance(classes, str) else [n.strip() for n in classes]
    names = [name for name in names if name]
    if not names:
        raise DetectError(f"classes: no class name given; the model has: {', '.join(class_names)}")
    unknown = [name for name in names if name not in class_names]
    if unknown:
        separator = "; " if any("," in name for name in class_names) else ", "  # names may hold commas
        raise DetectError(f"classes: unknown class(es) {separator.join(unknown)}; the model has: "
                          f"{separator.join(class_names)}")
    return {list(class_names).index(name) + 1 for name in names}
