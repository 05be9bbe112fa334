"""Read an image file robustly into an HxWx3 uint8 RGB numpy array.

The format is decided by the file's bytes, not its extension (a PNG named .jpg decodes fine).
Grayscale, RGBA and 16-bit images are converted to 8-bit RGB. A missing file, an empty file, bytes
that are not an image, and a truncated JPEG or PNG raise DataError with one line naming the file.

Why the end-marker check: a decoder given a truncated JPEG fills what is missing with grey and may
return it as if it were whole; a training run would then learn from half an image. Real datasets
also hold JPEGs that lack only their last bytes: they decode to full size with at most a few grey
blocks at the end. Such a file is read with a warning naming the file and the share of its pixels
that is missing, as long as that share is at most `max_missing_share` (data.max_missing_share);
above it, it stays an error.

Why the pixel limit: a file of a few hundred bytes can declare 30000 x 30000 pixels, which the
decoder allocates in full (gigabytes). The size is read from the format's own header first
(detect.data.image_header); an image over `max_pixels` (data.max_pixels, `--max-pixels`) and a file
whose header no parser understands are refused before any pixel is decoded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from detect.data.image_header import DEFAULT_MAX_PIXELS, check_pixel_limit
from detect.errors import DataError

log = logging.getLogger(__name__)

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
# Some writers pad a file after its end marker; look for the marker this far from the end.
_TAIL_BYTES = 1024
# The default of data.max_missing_share: a few grey blocks in the last block row pass, more does not.
MAX_MISSING_SHARE = 0.01
# What a JPEG decoder leaves where the data ended: zero coefficients, mid grey in every channel.
_MISSING_GREY = 128


def read_image(path: str | Path, max_missing_share: float = MAX_MISSING_SHARE,
               warn: Callable[[str], None] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Returns the image at `path` as uint8 RGB [H, W, 3]; raises DataError naming the file.

    A JPEG without its end marker is read when at most `max_missing_share` of its pixels are missing;
    `warn(message)` then receives the warning (default: `warn_once`, this module's logger). An image
    whose header declares more than `max_pixels` pixels is refused undecoded (None: no limit)."""
    path = Path(path)
    return decode_image(read_image_bytes(path), path, max_missing_share, warn, max_pixels)


def decode_image(data: bytes, path: str | Path = "<image>", max_missing_share: float = MAX_MISSING_SHARE,
                 warn: Callable[[str], None] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> uint8 RGB [H, W, 3]; DataError naming `path` when they
    are truncated, not an image, or declare more than `max_pixels` pixels. (What `read_image` does
    once the file is read; the server decodes uploads with it.)"""
    check_pixel_limit(data, str(path), max_pixels)  # before any decoder, Pillow's included, sees the bytes
    if is_truncated_jpeg(data):
        try:  # the end marker lets the decoder finish; what the file lacks comes out grey
            image = decode(data + _JPEG_END, path)
        except DataError:
            raise DataError(f"{path}: truncated JPEG (no end-of-image marker), cannot be decoded") from None
        share = missing_share(image)
        if share > max_missing_share:
            raise DataError(f"{path}: truncated JPEG (no end-of-image marker), {share:.1%} of the image is "
                            f"missing (data.max_missing_share is {max_missing_share:g})")
        (warn or warn_once)(f"{path}: truncated JPEG (no end-of-image marker) read, "
                             f"{share:.2%} of the image is missing (grey)")
        return to_rgb8(image, path)
    check_complete(data, path)
    return to_rgb8(decode(data, path), path)


def decode(data: bytes, path: Path) -> np.ndarray:
    """OpenCV's decoded array (any depth and channels); DataError when it cannot decode."""
    # IMREAD_UNCHANGED keeps 16-bit depth and alpha so we convert them ourselves, and ignores EXIF
    # orientation: VOC and COCO boxes are drawn on the stored pixels, so the stored pixels are used.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot decode image (not an image format OpenCV reads, or corrupt)")
    if image.size == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"{path}: image has size 0 ({image.shape})")
    return image


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A file read every epoch is reported once per process."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def is_truncated_jpeg(data: bytes) -> bool:
    """JPEG bytes without their end marker near the end that Pillow (when installed) cannot decode
    either (see `decodes_fully`: some cameras append their own data after the marker)."""
    return data.startswith(_JPEG_START) and _JPEG_END not in data[-_TAIL_BYTES:] and not decodes_fully(data)


def missing_share(image: np.ndarray) -> float:
    """Share of the pixels a truncated JPEG lacks: the grey the decoder left after the point where
    the data ended. The decoder works in block rows, left to right, so that is a run of grey at the
    right end of the lowest pixel rows (a part of the last block row), and whole grey rows below it.
    Counted from the bottom row up, row by row, until a row does not end in grey."""
    pixels = image if image.ndim == 3 else image[:, :, None]
    grey = (pixels == _MISSING_GREY).all(axis=2)
    missing = 0
    for row in grey[::-1]:
        run = row.size if row.all() else int(np.argmin(row[::-1]))
        if run == 0:
            break
        missing += run
    return missing / grey.size


def missing_image_message(path: Path) -> str:
    """Why `path` cannot be opened, where it is missing: a link (convert's default) names what it pointed
    at, since the source moving is the usual cause."""
    if Path(path).is_symlink():
        return (f"a link to {os.readlink(path)}, which is not there (the images it linked to moved or were "
                "deleted; convert with --copy to keep copies)")
    return "image file not found"


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes; DataError when it is missing, unreadable or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {missing_image_message(path)}") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read image file ({error.strerror or error})") from None
    if len(data) == 0:
        raise DataError(f"{path}: image file is empty (0 bytes)")
    return data


def check_complete(data: bytes, path: str | Path) -> None:
    """DataError when PNG bytes lack their end chunk (a truncated file). JPEGs: see `decode_image`."""
    tail = data[-_TAIL_BYTES:]
    if data.startswith(_PNG_START) and b"IEND" not in tail and not decodes_fully(data):
        raise DataError(f"{path}: truncated PNG (no IEND chunk)")


def decodes_fully(data: bytes) -> bool:
    """Second opinion for a file without its end marker near the end (some cameras append kilobytes
    of their own data after it): Pillow raises on truncated image data where OpenCV does not.
    Without Pillow the marker check stands."""
    try:
        from PIL import Image
    except ImportError:
        return False
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # Pillow raises OSError, SyntaxError or ValueError on broken data
        return False
    return True


def to_rgb8(image: np.ndarray, path: Path | str = "<image>") -> np.ndarray:
    """OpenCV's decoded array (gray, BGR or BGRA; 8-bit, 16-bit or float) -> uint8 RGB [H, W, 3]."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float16, np.float32, np.float64):
        image = float_to_uint8(image)
    elif image.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{path}: unsupported number of channels {channels}")


def float_to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels -> uint8. Float TIFFs come in two conventions: 0..1 (scaled by 255 here) and 0..255
    (kept): a brightest value above 1 says which. NaN becomes 0."""
    pixels = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if pixels.size == 0 or float(pixels.max()) <= 1.0 else 1.0
    return (np.clip(pixels * scale, 0.0, 255.0) + 0.5).astype(np.uint8)
