"""An image's width and height read from its file header, before any pixel is decoded.

Why our own parser: a file of a few hundred bytes can declare 30000 x 30000 pixels, and OpenCV
allocates the whole image (gigabytes) before it finds out the data is missing. Pillow reads most
headers without decoding, but it refuses files OpenCV still decodes (a BMP with an unusual info
header, a PNG with a bad CRC in a later chunk), so a guard built on Pillow lets exactly those through.
The sizes below come from each format's own fixed header fields, which are what the decoders
allocate from:

    JPEG   the first start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC)
    PNG    IHDR, always the first chunk
    BMP    the DIB header (core 12-byte, or 40 bytes and larger)
    GIF    the logical screen, and each frame's descriptor (a frame may reach past the screen)
    TIFF   ImageWidth / ImageLength of the first IFD (the page OpenCV reads)
    WebP   VP8 / VP8L / VP8X chunk
    PNM    P1..P6 text header, PAM (P7) WIDTH / HEIGHT

    header_size(data) -> (format, width, height) | None      None: no parser understands the bytes
    check_pixel_limit(data, name, max_pixels) -> (format, width, height); DataError over the limit
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from detect.config import DEFAULT_MAX_PIXELS
from detect.errors import DataError

__all__ = ["DEFAULT_MAX_PIXELS", "check_pixel_limit", "file_header_size", "format_of", "header_size"]
HEADER_BYTES = 1 << 16

# JPEG markers that carry no frame size although they sit in the SOF range.
_NOT_SOF = {0xC4, 0xC8, 0xCC}


def header_size(data: bytes) -> tuple[str, int, int] | None:
    """(format name, width, height) from the header; None when the format is not one we read or the
    header is cut short."""
    for signature, reader in _READERS:
        if data.startswith(signature):
            try:
                size = reader(data)
            except (struct.error, IndexError, ValueError):
                return None
            return None if size is None else (_FORMAT_NAMES[reader], *size)
    return None


def file_header_size(path: str | Path) -> tuple[str, int, int] | None:
    """header_size of a file: its first 64 KiB, then the whole file when the header reaches further
    (a JPEG's EXIF or ICC segments may come before its size). OSError for a file that cannot be read."""
    with open(path, "rb") as file:
        start = file.read(HEADER_BYTES)
        size = header_size(start)
        if size is None and len(start) == HEADER_BYTES:
            size = header_size(start + file.read())
    return size


def format_of(data: bytes) -> str | None:
    """The format name the leading bytes announce (JPEG, PNG ...), None for none we read."""
    for signature, reader in _READERS:
        if data.startswith(signature):
            return _FORMAT_NAMES[reader]
    return None


def check_pixel_limit(data: bytes, name: str, max_pixels: int | None) -> tuple[str, int, int] | None:
    """The header's (format, width, height); DataError naming `name` when the header cannot be read or
    declares more than `max_pixels` pixels. `max_pixels` None: no limit, and no check at all."""
    if max_pixels is None:
        return None
    found = header_size(data)
    if found is None and format_of(data) is not None:
        raise DataError(f"{name}: truncated or corrupt {format_of(data)}: the header holds no readable image size; "
                        f"not decoded")
    if found is None:
        raise DataError(f"{name}: cannot decode: not a JPEG, PNG, BMP, GIF, TIFF, WebP or PNM file, or its header "
                        f"is cut short (the image size is read from it before decoding)")
    kind, width, height = found
    if width <= 0 or height <= 0:
        raise DataError(f"{name}: the {kind} header declares a size of {width}x{height} pixels")
    if width * height > max_pixels:
        raise DataError(f"{name}: {kind} of {width}x{height} pixels is over the limit of {max_pixels} pixels "
                        f"(max_pixels); not decoded")
    return found


def _jpeg(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_SOF:
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        position += 2 + length
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _bmp(data: bytes) -> tuple[int, int] | None:
    header_bytes = struct.unpack("<I", data[14:18])[0]
    if header_bytes == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:  # 40 bytes and every later header (52, 56, 64, 100, 108, 124 ...): signed 32-bit sizes
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _gif(data: bytes) -> tuple[int, int] | None:
    width, height, flags = struct.unpack("<HHB", data[6:11])
    position = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < len(data):
        block = data[position]
        if block == 0x2C:  # an image descriptor: left, top, width, height
            left, top, frame_width, frame_height, frame_flags = struct.unpack(
                "<HHHHB", data[position + 1:position + 10])
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            position += 10 + (3 * 2 ** ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0) + 1
            position = _skip_sub_blocks(data, position)
        elif block == 0x21:  # an extension: label, then sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        else:  # the trailer (0x3B), or bytes that are not GIF blocks
            break
    return width, height


def _skip_sub_blocks(data: bytes, position: int) -> int:
    while position < len(data) and data[position] != 0:
        position += data[position] + 1
    return position + 1


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset:offset + 2])[0]
    found = {}
    for entry in range(count):
        start = offset + 2 + 12 * entry
        tag, kind = struct.unpack(order + "HH", data[start:start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = data[start + 8:start + 12]
            found[tag] = struct.unpack(order + "H", value[:2])[0] if kind == 3 else struct.unpack(order + "I", value)[0]
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


def _webp(data: bytes) -> tuple[int, int] | None:
    if data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: after a 3-byte frame tag and the start code, 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14 bits each of width-1 and height-1
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


_PNM_FIELD = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")
_PAM_FIELD = re.compile(rb"^(WIDTH|HEIGHT)\s+(\d+)", re.MULTILINE)


def _pnm(data: bytes) -> tuple[int, int] | None:
    head = data[:4096]
    if head[:2] == b"P7":
        fields = dict(_PAM_FIELD.findall(head.split(b"ENDHDR")[0]))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            return None
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    position, sizes = 2, []
    for _ in range(2):
        match = _PNM_FIELD.match(head, position)
        if match is None:
            return None
        sizes.append(int(match.group(1)))
        position = match.end()
    return sizes[0], sizes[1]


_READERS = [
    (b"\xff\xd8", _jpeg),
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"BM", _bmp),
    (b"GIF87a", _gif),
    (b"GIF89a", _gif),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"RIFF", _webp),
    *((f"P{kind}".encode(), _pnm) for kind in range(1, 8)),
]
_FORMAT_NAMES = {_jpeg: "JPEG", _png: "PNG", _bmp: "BMP", _gif: "GIF", _tiff: "TIFF", _webp: "WebP", _pnm: "PNM"}
