"""Uploaded files -> HxWx3 uint8 RGB arrays, or the 4xx that names what is wrong with them.

415: the bytes are not an image format the server decodes (a text file, a PDF, empty bytes).
422: an image whose data is truncated or corrupt (detect.data.image_io's end-marker check and
decoder), or one larger than `max_pixels` (a small file can unpack to gigabytes).
"""

from __future__ import annotations

import numpy as np

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
DEFAULT_MAX_PIXELS = 40_000_000


class UploadError(Exception):
    """A file the server cannot run the detector on; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The upload's pixels as uint8 RGB [H, W, 3]; UploadError (415 or 422) naming the file."""
    if not data:
        raise UploadError(415, f"{name}: empty file, not an image")
    if not data.startswith(_SIGNATURES) or (data.startswith(b"RIFF") and data[8:12] != b"WEBP"):
        raise UploadError(415, f"{name}: not an image (JPEG, PNG, BMP, GIF, TIFF or WebP expected)")
    # The header's size first: decode_image's completeness check may decode a PNG whole (Pillow's
    # second opinion on a file without its end chunk).
    _check_pixel_count(data, name, max_pixels)
    try:
        return decode_image(data, name)
    except DataError as error:
        raise UploadError(422, str(error)) from None


def _check_pixel_count(data: bytes, name: str, max_pixels: int) -> None:
    """Read the size from the header (Pillow, without decoding) and refuse images too large to
    decode safely. Without Pillow, or for a header it cannot read, the decoder's own limit stands."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise UploadError(422, f"{name}: image has too many pixels to decode safely") from None
    except Exception:  # not Pillow's to judge: the decoder decides below
        return
    if width * height > max_pixels:
        raise UploadError(422, f"{name}: image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
