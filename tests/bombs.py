"""Image files of a few hundred bytes whose headers declare huge sizes (decompression bombs), made in
memory for the tests: each would make a decoder allocate gigabytes. Never written to the repository.

Some have honest headers Pillow reads; the others are the shapes Pillow refuses but OpenCV decodes
(an unusual BMP info header, PNG chunks with bad CRCs), which a guard built on Pillow let through.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000, extra: str = "bad_text_crc") -> bytes:
    """An 8-bit RGB PNG header of `width` x `height` with one row of data. `extra`: a chunk before
    the data that Pillow stops at: `bad_text_crc` (a tEXt chunk with a wrong CRC), `broken_iccp`
    (an iCCP chunk whose profile is not zlib data), `empty_srgb` (a zero-length sRGB chunk), or
    `none` (an honest file, which Pillow reads)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    extras = {
        "bad_text_crc": png_chunk(b"tEXt", b"Comment\x00hello", crc=1),
        "broken_iccp": png_chunk(b"iCCP", b"icc\x00\x00not zlib data"),
        "empty_srgb": png_chunk(b"sRGB", b""),
        "none": b"",
    }
    data = png_chunk(b"IDAT", zlib.compress(b"\x00" * (3 * width + 1)))
    return b"\x89PNG\r\n\x1a\n" + header + extras[extra] + data + png_chunk(b"IEND", b"")


def bmp_rle8_bomb(width: int = 20000, height: int = 20000, info_header_bytes: int = 100) -> bytes:
    """An 8-bit RLE BMP with an info header of `info_header_bytes` (Pillow knows 12, 40, 52, 56, 64,
    108 and 124) whose only pixel data is the end-of-bitmap code: about 1 KB."""
    palette = bytes(range(256)) * 4
    pixels = b"\x00\x01"  # RLE8: end of bitmap
    offset = 14 + info_header_bytes + len(palette)
    info = struct.pack("<IiiHHIIiiII", info_header_bytes, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    info += b"\x00" * (info_header_bytes - len(info))
    file_header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return file_header + info + palette + pixels


def jpeg_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A real 16 x 16 JPEG whose frame header is rewritten to declare `width` x `height`: about 600 bytes."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_frame_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A GIF whose logical screen is 1 x 1 but whose only frame declares `width` x `height`."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


BOMBS = {
    "bmp_rle8_info100.bmp": bmp_rle8_bomb,
    "png_bad_text_crc.png": lambda: png_bomb(extra="bad_text_crc"),
    "png_broken_iccp.png": lambda: png_bomb(25000, 25000, extra="broken_iccp"),
    "png_empty_srgb.png": lambda: png_bomb(30000, 30000, extra="empty_srgb"),
    "png_honest.png": lambda: png_bomb(extra="none"),
    "jpeg_30000.jpg": jpeg_bomb,
    "gif_big_frame.gif": gif_frame_bomb,
}
