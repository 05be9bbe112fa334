"""Reading the text and JSON files users hand us (split lists, COCO annotations, detections), in
whatever encoding their tools wrote, with one-line errors naming the file.

    read_text(path, what)   str; a UTF-8, UTF-16 or UTF-32 byte-order mark decides the encoding
                            (and is dropped), else strict UTF-8
    read_json(path, what)   the parsed JSON; malformed or too deeply nested files are DataErrors

Why: Windows tools write split lists and JSON with a UTF-8 byte-order mark (which a plain UTF-8 read
keeps as an invisible first character of the first id) or in UTF-16; nesting thousands of levels
deep makes Python's JSON parser raise RecursionError.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

from detect.errors import DataError

# Longest marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text(path: str | Path, what: str) -> str:
    """The file's text; DataError "<path>: <what> not found" / "... is not text" otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: {what} is a folder, not a file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    encoding = next((name for mark, name in _BYTE_ORDER_MARKS if data.startswith(mark)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"{path}: the {what} is not {encoding.upper().removesuffix('-SIG')} text (byte "
                        f"{error.start}, line {line}); save it as UTF-8") from None


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON of the file (see read_text for encodings)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read (arrays or objects inside each other "
                        f"thousands of levels deep); not a {what}") from None
