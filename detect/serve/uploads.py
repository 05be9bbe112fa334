"""Uploaded files -> HxWx3 uint8 RGB arrays, or the 4xx that names what is wrong with them.

415: the bytes are not an image format the server decodes (a text file, a PDF, empty bytes).
422: an image whose data is truncated or corrupt (detect.data.image_io's end-marker check and
decoder), one whose header declares more than `max_pixels` or that no header parser reads (a small
file can unpack to gigabytes; detect.data.image_header reads the size without decoding).
"""

from __future__ import annotations

import numpy as np

from detect.data.image_header import DEFAULT_MAX_PIXELS, check_pixel_limit
from detect.data.image_io import decode_image
from detect.errors import DataError

# Leading bytes of the formats OpenCV decodes that clients send.
_SIGNATURES = (
    b"\xff\xd8\xff",                      # JPEG
    b"\x89PNG\r\n\x1a\n",                 # PNG
    b"GIF87a", b"GIF89a",                 # GIF (OpenCV >= 4.7)
    b"BM",                                # BMP
    b"II*\x00", b"MM\x00*",               # TIFF
    b"RIFF",                              # WebP (RIFF....WEBP)
)


class UploadError(Exception):
    """A file the server cannot run the detector on; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_image_kind(data: bytes, name: str) -> None:
    """UploadError 415 when the bytes are not one of the image formats the server takes."""
    if not data:
        raise UploadError(415, f"{name}: empty file, not an image")
    if not data.startswith(_SIGNATURES) or (data.startswith(b"RIFF") and data[8:12] != b"WEBP"):
        raise UploadError(415, f"{name}: not an image (JPEG, PNG, BMP, GIF, TIFF or WebP expected)")


def upload_pixels(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The pixels the upload's header declares, read without decoding; UploadError 415 when the bytes
    are not an image, 422 when no header parser understands them or they declare over `max_pixels`."""
    check_image_kind(data, name)
    try:
        _, width, height = check_pixel_limit(data, name, max_pixels)
    except DataError as error:
        raise UploadError(422, str(error)) from None
    return width * height


def decode_upload(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The upload's pixels as uint8 RGB [H, W, 3]; UploadError (415 or 422) naming the file. The size
    is checked from the header before any decoder sees the bytes (decode_image: detect.data.image_header)."""
    check_image_kind(data, name)
    try:
        return decode_image(data, name, max_pixels=max_pixels)
    except DataError as error:
        raise UploadError(422, str(error)) from None
