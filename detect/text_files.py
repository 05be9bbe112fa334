"""Reading the text and JSON files users hand us (split lists, COCO annotations, detections), in
whatever encoding their tools wrote, with one-line errors naming the file.

    read_text(path, what, max_bytes)    str; a UTF-8, UTF-16 or UTF-32 byte-order mark decides the
                                        encoding (and is dropped), else strict UTF-8
    read_lines(path, what, max_bytes)   the same text line by line, streamed (never the whole file in
                                        memory): label files and lists of ids or images
    read_json(path, what)               the parsed JSON; malformed or too deeply nested files are DataErrors
    parse_yaml(text)                    yaml.safe_load, but aliases may not expand past MAX_YAML_NODES
                                        values (YAMLExpansionError, a yaml.YAMLError)

Why: Windows tools write split lists and JSON with a UTF-8 byte-order mark (which a plain UTF-8 read
keeps as an invisible first character of the first id) or in UTF-16; nesting thousands of levels
deep makes Python's JSON parser raise RecursionError. A file larger than its kind ever is (a label
file of a gigabyte) is refused by its size, in one line, before it is read. YAML aliases let a file
of a few hundred bytes stand for billions of values ("billion laughs"): the node graph is composed
first, which costs what the file's text costs, and its size with every alias expanded is counted
before any Python object is built.
"""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path
from typing import Any, Iterator

import yaml

from detect.errors import DataError

# Per-file size limits, far above what a real file of each kind holds.
MAX_LABEL_FILE_BYTES = 16 << 20  # a YOLO label file or a VOC XML (16 MiB: about 400,000 boxes)
MAX_LIST_FILE_BYTES = 256 << 20  # split lists and image lists (about 10 million ids)
MAX_YAML_FILE_BYTES = 4 << 20  # configs and data.yaml
MAX_YAML_NODES = 100_000  # values in a YAML document with its aliases expanded

# Longest marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text(path: str | Path, what: str, max_bytes: int | None = None) -> str:
    """The file's text; DataError "<path>: <what> not found" / "... is not text" / "... larger than"
    otherwise."""
    path = Path(path)
    with _open_binary(path, what, max_bytes) as stream:
        data = stream.read()
    encoding = _encoding_of(data[:4])
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise _not_text(path, what, encoding, f"byte {error.start}, line {line}") from None


def read_lines(path: str | Path, what: str, max_bytes: int) -> Iterator[str]:
    """The file's lines (without their ends), decoded as read_text does. UTF-8 files (nearly all) are
    read a line at a time; a file with a UTF-16 or UTF-32 mark is decoded whole (within `max_bytes`)."""
    path = Path(path)
    with _open_binary(path, what, max_bytes) as stream:
        encoding = _encoding_of(stream.peek(4)[:4])
        if encoding not in ("utf-8", "utf-8-sig"):
            yield from read_text(path, what, max_bytes).splitlines()
            return
        offset = 0
        for number, raw in enumerate(stream, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw, offset = raw[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise _not_text(path, what, encoding, f"byte {offset + error.start}, line {number}") from None
            offset += len(raw)


def _open_binary(path: Path, what: str, max_bytes: int | None) -> io.BufferedReader:
    try:
        stream = path.open("rb")
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: {what} is a folder, not a file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    if max_bytes is not None and size > max_bytes:
        stream.close()
        raise DataError(f"{path}: {size / 2**20:.0f} MiB, larger than any {what} (at most {max_bytes >> 20} MiB); "
                        "not read")
    return stream


def _encoding_of(head: bytes) -> str:
    return next((name for mark, name in _BYTE_ORDER_MARKS if head.startswith(mark)), "utf-8")


def _not_text(path: Path, what: str, encoding: str, where: str) -> DataError:
    return DataError(f"{path}: the {what} is not {encoding.upper().removesuffix('-SIG')} text ({where}); "
                     "save it as UTF-8")


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


class YAMLExpansionError(yaml.YAMLError):
    """A YAML document whose aliases expand past MAX_YAML_NODES values, or refer to themselves."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def parse_yaml(text: str) -> Any:
    """yaml.safe_load(text), refusing a document that is larger than MAX_YAML_NODES values with its
    aliases expanded (yaml.YAMLError, as for malformed YAML)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = expanded_size(node, MAX_YAML_NODES)
        if size is None:
            raise YAMLExpansionError("an alias refers to the value that holds it (a value without end)")
        if size > MAX_YAML_NODES:
            raise YAMLExpansionError(f"its aliases expand to more than {MAX_YAML_NODES:,} values; write the "
                                     "values out, or use fewer aliases")
        return loader.construct_document(node)
    except RecursionError:
        raise YAMLExpansionError("nested too deeply to read") from None
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, limit: int) -> int | None:
    """Values in the document under `root` with every alias expanded (counting stops past `limit`);
    None when a value holds itself. Each node is visited once: an alias is the same node object
    wherever it is used, and its size is remembered."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in children), limit + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return None
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
